"""`ecomwatch bench weblog`: decoding a web server access log against reading its lines.

Simulated shop traffic is written as a combined-format log (one line per event: the event's
ip, time and user agent, a product page, a cart or checkout endpoint or an asset; not timed).
The baseline reads the same file's lines with no parsing at all: pyarrow's CSV reader with no
delimiter or quote in the text, one binary column, on all cores (a second baseline, slower:
DuckDB reading them as one text column into Arrow). Then ecomwatch's file source
decodes it into events, as `run` does (chunks on two threads). Figures: seconds, lines a
second, and the decode's throughput as a share of the baseline's; the decode again with a URL
map of the log's shop paths (its cost against the plain decode); and `run` of the log into a
lake without and with detection (the detection's cost, as the 10 M bench measures it).
"""

from __future__ import annotations

import io
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ecomwatch.benchmarks.child import python_seconds
from ecomwatch.decode.url_map import UrlMap, load_url_map
from ecomwatch.decode.web_logs import WebLogOptions
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import as_typed_table
from ecomwatch.sources.base import Position
from ecomwatch.sources.files import FileSource, InputFormat

_PATHS = {
    "view": "/product/{}",
    "cart": "/cart/add?product={}",
    "remove_from_cart": "/cart/remove?product={}",
    "purchase": "/checkout/success?order={}",
}


def write_log(path: Path, lines: int, seed: int = 1) -> int:
    """A combined-format log of about `lines` lines from simulated traffic; the lines written."""
    written = 0
    with path.open("w", encoding="utf-8") as out:
        while written < lines:
            spec = TrafficSpec(events=min(500_000, lines - written), seed=seed + written)
            events = as_typed_table(pa.concat_tables(generate(spec)))
            seconds = events["event_time"].cast(pa.timestamp("s", tz="UTC"), safe=False)
            stamps = pc.strftime(seconds, format="%d/%b/%Y:%H:%M:%S +0000")
            sizes = np.random.default_rng(seed).integers(200, 60_000, events.num_rows)
            rows = zip(
                events["ip"].to_pylist(), stamps.to_pylist(), events["event_type"].to_pylist(),
                events["product_id"].to_pylist(), sizes.tolist(),
                events["user_agent"].to_pylist(), strict=True,
            )  # fmt: skip
            for i, (ip, stamp, kind, product, size, agent) in enumerate(rows):
                target = "/static/app.js" if i % 5 == 4 else _PATHS[kind].format(product)
                out.write(
                    f'{ip} - - [{stamp}] "GET {target} HTTP/1.1" 200 {size} '
                    f'"https://shop.example/" "{agent}"\n'
                )
            written += events.num_rows
    return written


def _read_lines(path: Path) -> tuple[float, int]:
    """The baseline: every line as one binary value, nothing parsed."""
    started = time.perf_counter()
    table = pacsv.read_csv(
        io.BytesIO(path.read_bytes()),
        read_options=pacsv.ReadOptions(column_names=["line"], use_threads=True),
        parse_options=pacsv.ParseOptions(delimiter="\x01", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={"line": pa.binary()}),
    )
    return time.perf_counter() - started, table.num_rows


BENCH_URL_MAP = """name = "bench-shop"
[[event]]
type = "view"
method = "GET"
path = '^/product/(?P<product_id>\\d+)$'
[[event]]
type = "cart"
path = '^/cart/add$'
query = '(?:^|&)product=(?P<product_id>\\d+)'
[[event]]
type = "remove_from_cart"
path = '^/cart/remove$'
query = '(?:^|&)product=(?P<product_id>\\d+)'
[[event]]
type = "purchase"
path = '^/checkout/success$'
"""


def _decode(path: Path, url_map: UrlMap | None = None) -> tuple[float, dict[str, int], int]:
    """Seconds, events by request kind (by event type with a map), rejected lines."""
    started = time.perf_counter()
    source = FileSource(path, web=WebLogOptions(url_map=url_map))
    column = "request_kind" if url_map is None else "event_type"
    assert source.format is InputFormat.ACCESS_LOG
    kinds: dict[str, int] = {}
    rejected = 0
    for batch in source.read(Position(0, 1)):
        for count in pc.value_counts(batch.decoded.events[column]).to_pylist():
            kinds[count["values"]] = kinds.get(count["values"], 0) + count["counts"]
        rejected += batch.decoded.rejects.num_rows
    return time.perf_counter() - started, kinds, rejected


def _run(path: Path, lake: Path, *, detect: bool) -> float:
    """Seconds of `ecomwatch run` of the log into a new lake (with detection: alerts too)."""
    from ecomwatch.config import Config
    from ecomwatch.ingest import ingest

    alerts = lake.with_suffix(".alerts.jsonl") if detect else None
    shutil.rmtree(lake, ignore_errors=True)  # a reused workdir: ingest again, not resume
    started = time.perf_counter()
    summary = ingest([path], lake, config=Config(), alerts=alerts)
    assert not summary.failed
    return time.perf_counter() - started


def _read_lines_duckdb(path: Path) -> float:
    """The second baseline: DuckDB reading the lines as one text column, into Arrow."""
    import duckdb

    started = time.perf_counter()
    source = (
        f"read_csv('{path}', columns={{'line': 'VARCHAR'}}, delim='\\x01', quote='', "
        "escape='', header=false, auto_detect=false)"
    )
    duckdb.connect().sql(f"SELECT line FROM {source}").to_arrow_table()
    return time.perf_counter() - started


def run_weblog_bench(workdir: Path, *, lines: int, repeat: int = 3) -> dict[str, Any]:
    """Every figure is the fastest of `repeat` runs, taken in turn (baseline, decode, ...), so
    that a slow spell of a shared machine does not land on one side only; detection's cost is
    the median of each repetition's with/without ratio."""
    path = workdir / f"access-{lines}.log"
    if not path.exists():
        write_log(path, lines)
    map_file = workdir / "bench-url-map.toml"
    map_file.write_text(BENCH_URL_MAP)
    url_map = load_url_map(map_file)
    runs: dict[str, list[float]] = {}
    # Untimed: the first `run` in a process pays for loading the rules, DuckDB and the log
    # into the page cache, which would flatter the first pair's detection cost.
    _run(path, workdir / "lake-detect", detect=True)
    for number in range(repeat):
        read_s, read_lines = _read_lines(path)
        runs.setdefault("read", []).append(read_s)
        runs.setdefault("duckdb_read", []).append(_read_lines_duckdb(path))
        decode_s, kinds, rejected = _decode(path)
        runs.setdefault("decode", []).append(decode_s)
        mapped_s, types, _ = _decode(path, url_map)
        runs.setdefault("mapped", []).append(mapped_s)
        # Each pair in turn runs with detection first or second: neither side always follows
        # the same work.
        for detect in (False, True) if number % 2 == 0 else (True, False):
            lake = workdir / ("lake-detect" if detect else "lake-plain")
            runs.setdefault("detect" if detect else "run", []).append(
                _run(path, lake, detect=detect)
            )
    pairs = [with_ / without for without, with_ in zip(runs["run"], runs["detect"], strict=True)]
    baseline_s, duckdb_s, decode_s, mapped_s, run_s, detect_s = (
        min(runs[name]) for name in ("read", "duckdb_read", "decode", "mapped", "run", "detect")
    )
    return {
        "bench": "weblog",
        "lines": read_lines,
        "bytes": path.stat().st_size,
        "events": sum(kinds.values()),
        "request_kinds": kinds,
        "rejected": rejected,
        "no_parse_read_s": round(baseline_s, 3),
        "decode_s": round(decode_s, 3),
        "decode_lines_per_s": round(read_lines / decode_s),
        "no_parse_lines_per_s": round(read_lines / baseline_s),
        "decode_to_no_parse": round(baseline_s / decode_s, 3),
        "duckdb_read_s": round(duckdb_s, 3),
        "decode_to_duckdb_read": round(duckdb_s / decode_s, 3),
        "mapped_event_types": types,
        "decode_with_url_map_s": round(mapped_s, 3),
        "url_map_overhead": round(mapped_s / decode_s - 1, 3),
        "run_s": round(run_s, 3),
        "run_with_detection_s": round(detect_s, 3),
        # Each repetition runs without and with detection: the median of those pairs' ratios
        # is the figure (the fastest of each side may come from different spells).
        "detection_overhead": round(statistics.median(pairs) - 1, 3),
        "detection_overhead_per_pair": [round(ratio - 1, 3) for ratio in pairs],
        "python_sum_range_1e8_s": round(python_seconds(), 2),
        "repeat": repeat,
        "seconds_of_each_run": {name: [round(x, 3) for x in xs] for name, xs in runs.items()},
    }
