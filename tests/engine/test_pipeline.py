"""The engine: exactly-once over crashes and reruns, dead letters, operator state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from ecomwatch.engine.pipeline import Pipeline, SourceStatus
from ecomwatch.engine.watermark import Watermark
from ecomwatch.operators.live_aggregates import TrafficAggregates
from ecomwatch.sinks.jsonl import JsonLinesFile
from ecomwatch.sources.base import Position, SourceBatch
from ecomwatch.testing import FakeClock, MemoryCommitter, MemorySource, rees46_csv


class Crash(Exception):
    pass


class CrashingSource:
    """Wraps a source and dies after `after` batches, like a process killed mid-run."""

    def __init__(self, inner: MemorySource, after: int) -> None:
        self.inner, self.after = inner, after
        self.name, self.source_id, self.size = inner.name, inner.source_id, inner.size

    def read(self, start: Position) -> Iterator[SourceBatch]:
        for i, batch in enumerate(self.inner.read(start)):
            if i == self.after:
                raise Crash
            yield batch


class RecordingOperator:
    name = "rows"

    def __init__(self) -> None:
        self.keys: list[tuple[str, int]] = []

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        self.keys += list(
            zip(
                events["source"].cast(pa.string()).to_pylist(),
                events["source_pos"].to_pylist(),
                strict=True,
            )
        )

    def snapshot(self) -> dict:
        return {"keys": [list(k) for k in self.keys]}

    def restore(self, state: dict) -> None:
        self.keys = [tuple(k) for k in state.get("keys", [])]


def rows(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "event_time": f"2019-11-01 00:{(start + i) // 60 % 60:02d}:{(start + i) % 60:02d} UTC",
            "event_type": "view" if i % 7 else "cart",
            "product_id": 100 + i % 13,
            "category_id": 2053013555631882655,
            "price": "1.50",
            "user_id": 1 + i % 5,
            "user_session": f"s{i % 9}",
        }
        for i in range(n)
    ]


def text_with_bad_rows(n: int) -> str:
    lines = rees46_csv(rows(n), extra=()).splitlines()
    for i in range(5, len(lines), 40):
        lines[i] = lines[i].replace(",view,", ",bogus,").replace(",cart,", ",bogus,")
    return "\n".join(lines) + "\n"


def make_pipeline(committer, operator, dead_letter=None, checkpoint_rows=50):
    return Pipeline(
        committer=committer,
        operators=[operator, TrafficAggregates()],
        watermark=Watermark(lateness_s=60, clock=FakeClock()),
        dead_letter=dead_letter,
        checkpoint_rows=checkpoint_rows,
    )


def test_crash_and_resume_is_exactly_once(tmp_path: Path):
    text = text_with_bad_rows(400)
    reference_op = RecordingOperator()
    reference_dl = JsonLinesFile(tmp_path / "ref.jsonl")
    make_pipeline(MemoryCommitter(), reference_op, reference_dl).run(
        [MemorySource(text, chunk_bytes=700)]
    )
    reference_dl.close()

    committer = MemoryCommitter()
    dl_path = tmp_path / "dl.jsonl"
    first = RecordingOperator()
    dead = JsonLinesFile(dl_path)
    with contextlib.suppress(Crash):
        make_pipeline(committer, first, dead).run(
            [CrashingSource(MemorySource(text, chunk_bytes=700), after=9)]
        )
    dead.close()
    assert committer.checkpoints, "a checkpoint should have been committed before the crash"

    resumed = RecordingOperator()
    dead = JsonLinesFile(dl_path)
    summary = make_pipeline(committer, resumed, dead).run([MemorySource(text, chunk_bytes=700)])
    dead.close()
    assert sorted(resumed.keys) == sorted(reference_op.keys)
    assert len(set(resumed.keys)) == len(resumed.keys)
    assert dl_path.read_text() == (tmp_path / "ref.jsonl").read_text()
    assert summary.sources[0].resumed_from_line is not None
    final = committer.checkpoints[-1]["sources"]["mem"]
    assert final["read"] == final["accepted"] + final["rejected"] == 400


def test_rerun_on_ingested_input_adds_nothing():
    committer = MemoryCommitter()
    text = rees46_csv(rows(120), extra=())
    operator = RecordingOperator()
    make_pipeline(committer, operator).run([MemorySource(text)])
    again = RecordingOperator()
    summary = make_pipeline(committer, again).run([MemorySource(text)])
    assert summary.sources[0].status is SourceStatus.ALREADY_INGESTED
    assert summary.read == 0
    assert sorted(again.keys) == sorted(operator.keys)  # restored, nothing new


def test_duplicate_rows_inside_a_file_all_count():
    committer = MemoryCommitter()
    same = rows(1) * 5
    operator = RecordingOperator()
    summary = make_pipeline(committer, operator).run([MemorySource(rees46_csv(same, extra=()))])
    assert summary.accepted == 5
    assert len(set(operator.keys)) == 5


def test_live_aggregates_close_windows_and_count_late_events():
    agg = TrafficAggregates(retention_minutes=10)
    import numpy as np

    from ecomwatch.decode.validate import validate

    def batch(times: list[str]) -> pa.Table:
        raw = pa.table(
            {
                "event_time": times,
                "event_type": ["purchase"] * len(times),
                "product_id": ["1"] * len(times),
                "category_id": [""] * len(times),
                "category_code": [""] * len(times),
                "brand": [""] * len(times),
                "price": ["2.5"] * len(times),
                "user_id": ["1"] * len(times),
                "user_session": ["s"] * len(times),
            }
        )
        return validate(raw, np.arange(len(times)), source_name="t", source_id="t").events

    minute = 60_000_000
    base = 1_572_566_400 * 1_000_000  # 2019-11-01 00:00 UTC
    agg.process(batch(["2019-11-01 00:00:10 UTC", "2019-11-01 00:00:50 UTC"]), base)
    assert agg.open[base]["purchase"] == 2 and agg.open[base]["revenue"] == 5.0
    agg.process(batch(["2019-11-01 00:01:10 UTC"]), base + minute + 1)
    assert base in agg.closed and base + minute in agg.open
    agg.process(batch(["2019-11-01 00:00:20 UTC"]), base + minute + 2)
    assert agg.late_events == 1
    restored = TrafficAggregates(retention_minutes=10)
    restored.restore(agg.snapshot())
    assert restored.minutes() == agg.minutes()
    # A batch spanning months (sparse minutes) is counted the same way.
    sparse = TrafficAggregates()
    sparse.process(batch(["2019-11-01 00:00:10 UTC", "2020-03-01 00:00:10 UTC"] * 2), None)
    assert [(m["events"], m["purchase"], m["revenue"]) for m in sparse.minutes()] == [
        (2, 2, 5.0),
        (2, 2, 5.0),
    ]
