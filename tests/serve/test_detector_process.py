"""The service's detector in a child process: the same alerts as the detector in process, a
snapshot that restores into a new process without losing or doubling an alert, and the child's
failure raised in the pipeline."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from ecomwatch.detect.detector import Detector
from ecomwatch.detect.rules import load_rules
from ecomwatch.engine.watermark import Watermark
from ecomwatch.serve.detector_process import DetectorProcess
from ecomwatch.sinks.jsonl import read_json_lines
from ecomwatch.sources.base import Position
from ecomwatch.testing import MemorySource, rees46_csv
from tests.detect.test_detector import INJECTED


def batches() -> list[tuple[pa.Table, int | None]]:
    """The injected misbehaviour in small batches, each with the watermark after it."""
    rows = sorted((e for _, events in INJECTED.values() for e in events),
                  key=lambda r: r["event_time"])  # fmt: skip
    watermark = Watermark(lateness_s=300, idle_timeout_s=10)
    out = []
    for part in MemorySource(rees46_csv(rows), chunk_bytes=4096).read(Position()):
        events = part.decoded.events
        watermark.observe(events["event_time"])
        out.append((events, watermark.current()))
    return out


def ids(alerts: list[dict]) -> set[tuple]:
    return {(a["alert_id"], a["rule"], a["entity"], a["severity"]) for a in alerts}


@pytest.fixture(scope="module")
def expected() -> set[tuple]:
    heard: list[dict] = []
    detector = Detector(load_rules(), listeners=[heard.extend], keep_alerts=False)
    for events, watermark in batches():
        detector.process(events, watermark)
    detector.snapshot()
    assert {rule for _, rule, _, _ in ids(heard)} == set(INJECTED)
    return ids(heard)


def test_the_child_raises_what_the_detector_in_process_raises(tmp_path: Path, expected):
    heard: list[dict] = []
    child = DetectorProcess(load_rules(), alerts_path=tmp_path / "alerts.jsonl",
                            listeners=[heard.extend])  # fmt: skip
    try:
        for events, watermark in batches():
            child.process(events, watermark)
        state = child.snapshot().result(timeout=60)  # after every batch: alerts came first
    finally:
        child.close()
    assert ids(heard) == expected
    assert ids(read_json_lines(tmp_path / "alerts.jsonl")) == expected
    assert state["alerts_bytes"] == (tmp_path / "alerts.jsonl").stat().st_size


def test_a_snapshot_restores_into_a_new_process_exactly_once(tmp_path: Path, expected):
    alerts = tmp_path / "alerts.jsonl"
    parts = batches()
    half = len(parts) // 2
    first = DetectorProcess(load_rules(), alerts_path=alerts)
    try:
        for events, watermark in parts[:half]:
            first.process(events, watermark)
        state = first.snapshot().result(timeout=60)
        for events, watermark in parts[half:]:  # lost: no checkpoint after them
            first.process(events, watermark)
    finally:
        first.close()
    second = DetectorProcess(load_rules(), alerts_path=alerts)
    try:
        second.restore(state)  # cuts the alerts file back to the checkpoint
        for events, watermark in parts[half:]:
            second.process(events, watermark)
        second.snapshot().result(timeout=60)
    finally:
        second.close()
    written = read_json_lines(alerts)
    last = {a["alert_id"]: a for a in written}
    assert ids(list(last.values())) == expected
    assert len(written) == len({(a["alert_id"], a["severity"]) for a in written})  # none twice


def test_a_failure_in_the_child_is_raised_in_the_pipeline(tmp_path: Path):
    child = DetectorProcess(load_rules(), alerts_path=tmp_path / "alerts.jsonl")
    try:
        events, watermark = batches()[0]
        broken = events.set_column(0, "event_time", pa.array(["not a time"] * len(events)))
        child.process(broken, watermark)
        with pytest.raises(RuntimeError, match="the detector process failed"):
            child.snapshot().result(timeout=60)
        with pytest.raises(RuntimeError, match="Traceback"):
            child.process(events, watermark)
    finally:
        child.close()
