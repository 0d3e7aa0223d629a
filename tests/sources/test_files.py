"""File sources: formats agree, faults keep what was read, positions resume exactly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomwatch.schema import EVENT_SCHEMA
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic
from ecomwatch.sources.base import Position, SourceError
from ecomwatch.sources.files import FileSource, detect_format, file_sources, fingerprint

COLUMNS = ["event_time", "event_type", "product_id", "user_id", "price", "user_session", "ip"]


def collect(source: FileSource, start: Position | None = None):
    events, rejects, last = [EVENT_SCHEMA.empty_table()], [], None
    for batch in source.read(start or Position()):
        events.append(batch.decoded.events)
        rejects.extend(batch.decoded.rejects.to_pylist())
        last = batch.position
    return pa.concat_tables(events), rejects, last


def normalized(table: pa.Table) -> list[dict]:
    return (
        table.select(COLUMNS)
        .cast(
            pa.schema(
                [
                    table.schema.field(c) if c != "event_type" else pa.field(c, pa.string())
                    for c in COLUMNS
                ]
            )
        )
        .to_pylist()
    )


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("traffic")
    tables = list(generate(TrafficSpec(events=20_000, seed=3)))
    paths = {}
    for name in ("t.csv", "t.csv.gz", "t.parquet", "t.jsonl"):
        paths[name] = base / name
        write_traffic(iter(tables), paths[name])
    return paths


def test_detect_format():
    assert detect_format(Path("a.csv.gz")) == ("csv", True)
    assert detect_format(Path("a.CSV")) == ("csv", False)
    assert detect_format(Path("a.jsonl")) == ("jsonl", False)
    assert detect_format(Path("a.parquet")) == ("parquet", False)


def test_every_format_gives_the_same_events(traffic):
    reference, rejects, _ = collect(FileSource(traffic["t.csv"], chunk_bytes=1 << 16))
    assert rejects == []
    assert reference.num_rows == 20_000
    for name in ("t.csv.gz", "t.parquet", "t.jsonl"):
        events, rejects, _ = collect(FileSource(traffic[name], chunk_bytes=1 << 16))
        assert rejects == [], name
        assert normalized(events) == normalized(reference), name


def test_resume_from_a_position_continues_exactly(traffic):
    for name in ("t.csv", "t.csv.gz", "t.parquet"):
        source = FileSource(traffic[name], chunk_bytes=1 << 15)
        full, _, _ = collect(source)
        batches = source.read(Position())
        first = next(batches)
        second = next(batches)
        batches.close()
        rest, _, last = collect(source, second.position)
        assert last is not None and last.done
        head = pa.concat_tables([first.decoded.events, second.decoded.events])
        assert head.num_rows + rest.num_rows == full.num_rows, name
        assert normalized(pa.concat_tables([head, rest])) == normalized(full), name


def test_truncated_gzip_keeps_rows_and_names_the_file(tmp_path, traffic):
    whole = traffic["t.csv.gz"].read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    source = FileSource(cut, chunk_bytes=1 << 14)
    events: list[pa.Table] = []
    rejects: list[dict] = []
    with pytest.raises(SourceError) as failure:
        for batch in source.read(Position()):
            events.append(batch.decoded.events)
            rejects.extend(batch.decoded.rejects.to_pylist())
    assert "cut.csv.gz" in str(failure.value)
    assert "truncated" in str(failure.value)
    kept = sum(t.num_rows for t in events)
    # Everything before the fault is kept: all complete lines of the readable half.
    readable = gzip.GzipFile(fileobj=__import__("io").BytesIO(cut.read_bytes()))
    text = b""
    try:
        while block := readable.read(1 << 16):
            text += block
    except EOFError:
        pass
    complete_rows = text.count(b"\n") - 1  # minus the header
    assert kept >= complete_rows - 1
    assert kept + len(rejects) >= complete_rows


def test_unreadable_inputs_are_errors_not_exceptions(tmp_path, traffic):
    missing = tmp_path / "missing.csv"
    directory = tmp_path
    sources, errors = file_sources([missing, traffic["t.csv"], directory])
    assert [s.path for s in sources] == [traffic["t.csv"]]
    assert len(errors) == 2
    assert "missing.csv" in str(errors[0])


def test_fingerprint_follows_content_not_name(tmp_path, traffic):
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(traffic["t.csv"].read_bytes())
    assert fingerprint(copy) == fingerprint(traffic["t.csv"])
    copy.write_bytes(copy.read_bytes() + b"2019-11-01 00:00:00 UTC,view,1,,,,1.0,1,s\n")
    assert fingerprint(copy) != fingerprint(traffic["t.csv"])


def test_jsonl_bad_lines_are_rejected(tmp_path):
    path = tmp_path / "e.jsonl"
    good = {
        "event_time": "2019-11-01 00:00:00 UTC",
        "event_type": "view",
        "product_id": 1,
        "category_id": 2053013555631882655,
        "price": 1.5,
        "user_id": 7,
        "user_session": "s",
    }
    path.write_text(json.dumps(good) + "\n{not json\n[1,2]\n\n" + json.dumps(good) + "\n")
    events, rejects, _ = collect(FileSource(path))
    assert events.num_rows == 2
    assert events["category_id"].to_pylist() == [2053013555631882655] * 2
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "bad_json"), (3, "bad_json")]


def test_parquet_with_typed_columns(tmp_path):
    path = tmp_path / "typed.parquet"
    pq.write_table(
        pa.table(
            {
                "event_time": pa.array([0, 1_000_000], pa.timestamp("us")),
                "event_type": ["view", "nope"],
                "product_id": pa.array([1, 2], pa.int64()),
                "category_id": pa.array([2053013555631882655, None], pa.int64()),
                "category_code": [None, None],
                "brand": ["a", None],
                "price": [1.0, 2.0],
                "user_id": pa.array([5, 6], pa.int64()),
                "user_session": ["s", "t"],
            }
        ),
        path,
    )
    events, rejects, _ = collect(FileSource(path))
    assert events.num_rows == 1
    assert events["category_id"].to_pylist() == [2053013555631882655]
    assert [(r["line"], r["reason"]) for r in rejects] == [(2, "unknown_event_type")]
