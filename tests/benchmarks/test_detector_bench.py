"""`ecomwatch bench detector` drives a detector as a file run does, and says where its time
went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ecomwatch.benchmarks.detector_bench import decoded_batches, detector_round, run_detector_bench
from ecomwatch.config import Config
from ecomwatch.detect.rules import load_rules
from ecomwatch.ingest import ingest
from ecomwatch.simulate.attacks import AttackScenario, in_chunks
from ecomwatch.simulate.traffic import TrafficSpec
from ecomwatch.simulate.writers import write_traffic


def _raised(lines: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(line["rule"], line["entity"]) for line in lines}


def test_the_bench_raises_what_a_file_run_raises_on_the_same_file(tmp_path: Path):
    table, _ = AttackScenario(TrafficSpec(events=20_000, seed=11, days=1 / 24)).build()
    path = tmp_path / "attacks.csv"
    write_traffic(in_chunks(table), path)
    # Small enough that the run judges and checkpoints several times, as at full size.
    config = Config.model_validate(
        {"detect": {"judge_rows": 5_000}, "engine": {"checkpoint_rows": 12_000}}
    )
    alerts = tmp_path / "alerts.jsonl"
    ingest([path], tmp_path / "lake", config=config, alerts=alerts)
    by_run = [json.loads(line) for line in alerts.read_text().splitlines()]

    batches, decode_s = decoded_batches(path)
    by_bench: list[dict[str, Any]] = []
    figures = detector_round(batches, load_rules(), config, listeners=[by_bench.extend])
    assert decode_s > 0 and sum(b.num_rows for b in batches) == table.num_rows
    assert len(by_run) > 20  # the scenario's attacks were found …
    assert _raised(by_bench) == _raised(by_run)  # … and the same ones
    assert figures["alerts"] == len(by_bench)
    stages = figures["stages_s"]
    for stage in ("projection", "pending", "screening", "matching", "members", "checkpoint"):
        assert stages[stage] > 0, stage
    assert stages["correlating"] > 0


def test_the_figures_of_a_small_bench(tmp_path: Path):
    figures = run_detector_bench(
        events=20_000,
        rounds=2,
        seed=1,
        rules=load_rules(),
        config=Config.model_validate({}),
        workdir=tmp_path,
        console=Console(quiet=True),
    )
    assert figures["events"] == 20_000 and len(figures["detector_cpu_s"]) == 2
    best = min(figures["detector_cpu_s"])
    assert figures["ratio_to_decode"] == pytest.approx(best / figures["decode_cpu_s"], rel=0.02)
    assert (tmp_path / "traffic-20000-1.csv").exists()  # kept: --keep reuses it
