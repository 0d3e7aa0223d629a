"""`ecomwatch bench ingest`: ingest throughput against a floor, memory, storage and query speed.

The floor is DuckDB reading the same CSV once and writing it once as ZSTD Parquet — what any
ingest must at least do. Both are timed in the same invocation, so the ratio holds on a noisy
machine where absolute seconds do not. Peak RSS is read from the kernel for the `ecomwatch run`
child process, as the child reports it.

Query speed is the full report (every section of `ecomwatch report --format json`) three ways:
the product's report on the lake (from its rollups), the raw-event SQL on the lake's Parquet files,
and the raw-event SQL on the CSV (the hand-rolled baseline). `query_speedup` compares the first
with the last; `query_speedup_raw_sql` the second with the last (the storage format alone).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ecomwatch.analytics.report import (
    build_report,
    connect,
    define_csv_view,
    define_lake_view,
    lake_report,
)
from ecomwatch.benchmarks.child import ChildRun, ecomwatch_command, python_seconds, timed_child
from ecomwatch.benchmarks.workdir import bench_workdir
from ecomwatch.lake.base import EventTable
from ecomwatch.lake.open import open_lake


def timed_run(
    csv_path: Path,
    lake: Path,
    lake_format: str = "hudi",
    alerts: Path | None = None,
    *,
    sample_rss: bool = False,
) -> ChildRun:
    """`ecomwatch run CSV --json` into a new lake (and new alerts: a kept directory's earlier
    alerts and incidents files are removed, or the run would add to them), timed from outside."""
    if lake.exists():
        shutil.rmtree(lake)
    if alerts is not None:
        for earlier in alerts.parent.glob(f"{alerts.stem}.*"):
            earlier.unlink()
    command = ecomwatch_command(
        "run",
        str(csv_path),
        "--lake",
        str(lake),
        "--json",
        *(["--alerts", str(alerts)] if alerts is not None else []),
    )
    env = {**os.environ, "ECOMWATCH_LAKE__FORMAT": lake_format}
    return timed_child(command, env, sample_rss=sample_rss)


def timed_floor(csv_path: Path, target: Path) -> tuple[float, int]:
    """DuckDB reading the CSV once and writing it once as ZSTD Parquet (the floor): its
    seconds and the Parquet file's bytes."""
    con = connect()
    source, written = (str(p).replace("'", "''") for p in (csv_path, target))  # SQL literals
    started = time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM read_csv('{source}')) TO '{written}' "
        "(FORMAT parquet, COMPRESSION zstd)"
    )
    return time.perf_counter() - started, target.stat().st_size


def report_seconds(define: Any) -> float:
    con = connect()
    define(con)
    started = time.perf_counter()
    build_report(con)
    return time.perf_counter() - started


def lake_report_seconds(table: EventTable) -> float:
    started = time.perf_counter()
    lake_report(table)
    return time.perf_counter() - started


def define_parquet_view(con: Any, parquet_path: Path) -> None:
    """The `events` view over DuckDB's own Parquet file of the CSV (the floor's output): the
    layout a user could make in one line, as a baseline for queries on the lake."""
    con.execute(f"CREATE OR REPLACE VIEW events AS SELECT * FROM read_parquet('{parquet_path}')")


def run_bench(*, events: int, keep: Path | None, seed: int, console: Console) -> dict[str, Any]:
    with bench_workdir(keep, "ecomwatch-bench-") as base:
        figures = _bench(base, events=events, seed=seed, console=console)
    return {**figures, "kept": str(keep) if keep else None}


def simulated_csv(base: Path, events: int, seed: int, console: Console) -> Path:
    """The simulated input, made once per working directory (a kept one is reused)."""
    csv_path = base / f"traffic-{events}-{seed}.csv"
    if not csv_path.exists():
        console.print(f"simulating {events:,} events → {csv_path} (not timed)")
        from ecomwatch.simulate.traffic import TrafficSpec, generate
        from ecomwatch.simulate.writers import write_traffic

        partial = csv_path.with_name(f"partial-{csv_path.name}")  # still a .csv
        write_traffic(generate(TrafficSpec(events=events, seed=seed)), partial)
        partial.rename(csv_path)  # an interrupted simulation is not taken for a whole one
    return csv_path


def _bench(base: Path, *, events: int, seed: int, console: Console) -> dict[str, Any]:
    csv_path = simulated_csv(base, events, seed, console)
    console.print("timing the floor: DuckDB CSV → ZSTD Parquet")
    floor_target = base / "floor.parquet"
    floor, floor_bytes = timed_floor(csv_path, floor_target)
    console.print("timing ecomwatch run into a plain Parquet lake")
    parquet_seconds = timed_run(csv_path, base / "lake-parquet", "parquet").seconds
    parquet_table = open_lake(base / "lake-parquet")
    parquet_bytes = parquet_table.total_bytes()
    console.print("timing ecomwatch run into a Hudi lake (the default)")
    lake = base / "lake"
    plain = timed_run(csv_path, lake)
    seconds, summary = plain.seconds, json.loads(plain.last_json_line())
    table = open_lake(lake)
    files = table.data_files()
    console.print("timing ecomwatch run with detection (--alerts, the default rules)")
    alerts = base / "alerts.jsonl"
    detected = timed_run(csv_path, base / "lake-detect", alerts=alerts)
    detect_seconds, detect_summary = detected.seconds, json.loads(detected.last_json_line())
    shutil.rmtree(base / "lake-detect")
    console.print("timing the report: lake vs raw CSV")
    on_lake = lake_report_seconds(table)
    on_lake_raw = report_seconds(lambda con: define_lake_view(con, files))
    on_parquet_lake = lake_report_seconds(parquet_table)
    on_duckdb_parquet = report_seconds(lambda con: define_parquet_view(con, floor_target))
    on_csv = report_seconds(lambda con: define_csv_view(con, str(csv_path)))
    data_bytes = table.total_bytes()
    lake_bytes = data_bytes + table.rollup_bytes()
    csv_bytes = csv_path.stat().st_size
    return {
        "events": summary["accepted"],
        "seconds": round(seconds, 3),
        "events_per_s": round(summary["accepted"] / seconds),
        "floor_seconds": round(floor, 3),
        "ratio_to_floor": round(seconds / floor, 3),
        # Reported by the run itself (VmHWM): the kernel's ru_maxrss of a child would also count
        # the pages it shared with this process between fork and exec.
        "peak_rss_mb": summary["peak_rss_mb"],
        "lake_bytes": lake_bytes,
        "csv_bytes": csv_bytes,
        "lake_to_csv": round(lake_bytes / csv_bytes, 4),
        "floor_parquet_bytes": floor_bytes,
        "rollup_bytes": table.rollup_bytes(),
        "report_lake_s": round(on_lake, 3),
        "report_lake_raw_sql_s": round(on_lake_raw, 3),
        "report_csv_s": round(on_csv, 3),
        "query_speedup": round(on_csv / on_lake, 2),
        "query_speedup_raw_sql": round(on_csv / on_lake_raw, 2),
        # The same raw-event SQL on DuckDB's own Parquet file of the rows (target <= 1.0).
        "report_duckdb_parquet_raw_sql_s": round(on_duckdb_parquet, 3),
        "lake_raw_sql_to_duckdb_parquet": round(on_lake_raw / on_duckdb_parquet, 3),
        # The Hudi table against the plain Parquet lake written by the same pipeline.
        "parquet_lake_seconds": round(parquet_seconds, 3),
        "parquet_lake_data_bytes": parquet_bytes,
        "hudi_data_bytes": data_bytes,
        # The table's data files against DuckDB's ZSTD Parquet of the same rows (target <= 1.0).
        "hudi_to_duckdb_parquet": round(data_bytes / floor_bytes, 3),
        "hudi_write_throughput_vs_parquet": round(parquet_seconds / seconds, 3),
        "report_parquet_lake_s": round(on_parquet_lake, 3),
        # The same run with detection: its extra time over the plain run (target <= 0.30).
        "detect_seconds": round(detect_seconds, 3),
        "detection_overhead": round(detect_seconds / seconds - 1, 3),
        "detect_peak_rss_mb": detect_summary["peak_rss_mb"],
        "alerts": sum(1 for _ in alerts.open()),
        "cpus": os.cpu_count(),
        "python_sum_range_1e8_s": round(python_seconds(), 2),
    }
