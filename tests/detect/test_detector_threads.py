"""The detector's query threads: one setting for file input, DuckDB's default elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ecomwatch import ingest as ingest_module
from ecomwatch.config import Config
from ecomwatch.detect.detector import Detector
from ecomwatch.detect.rules import load_rules
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic


def _threads(detector: Detector) -> int:
    row = detector.con.execute("SELECT current_setting('threads')").fetchone()
    assert row is not None
    return int(row[0])


def test_a_detector_runs_its_queries_on_the_threads_it_is_given():
    assert _threads(Detector(load_rules(), threads=1)) == 1
    assert _threads(Detector(load_rules(), threads=3)) == 3


def test_file_threads_default_to_half_the_cores_and_at_least_one(monkeypatch):
    automatic = Config.model_validate({})
    monkeypatch.setattr(ingest_module.os, "cpu_count", lambda: 8)
    assert ingest_module.file_threads(automatic) == 4
    monkeypatch.setattr(ingest_module.os, "cpu_count", lambda: 1)
    assert ingest_module.file_threads(automatic) == 1
    monkeypatch.setattr(ingest_module.os, "cpu_count", lambda: None)
    assert ingest_module.file_threads(automatic) == 1
    chosen = Config.model_validate({"detect": {"file_threads": 3}})
    assert ingest_module.file_threads(chosen) == 3


@pytest.mark.parametrize(("setting", "expected"), [(0, 1), (2, 2)])
def test_a_file_run_gives_its_detector_the_file_threads(
    tmp_path: Path, monkeypatch, setting: int, expected: int
):
    made: list[Detector] = []

    class Recorded(Detector):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(ingest_module, "Detector", Recorded)
    monkeypatch.setattr(ingest_module.os, "cpu_count", lambda: 2)
    path = tmp_path / "events.csv"
    write_traffic(generate(TrafficSpec(events=2_000, seed=3)), path)
    config = Config.model_validate({"detect": {"file_threads": setting}})
    ingest_module.ingest([path], tmp_path / "lake", config=config, alerts=tmp_path / "alerts.jsonl")
    assert [_threads(detector) for detector in made] == [expected]
