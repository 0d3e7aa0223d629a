"""A benchmark's files: kept in the --keep directory given, removed with the temporary directory
otherwise (a 10 M-event bench writes gigabytes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecomwatch.benchmarks.workdir import bench_workdir


def test_a_given_workdir_is_kept_and_a_temporary_one_removed(tmp_path: Path):
    given = tmp_path / "kept"
    with bench_workdir(given, "x-") as base:
        (base / "traffic.csv").write_text("cached")
    assert (given / "traffic.csv").read_text() == "cached"
    with pytest.raises(RuntimeError), bench_workdir(None, "x-") as made:
        (made / "big").write_bytes(b"0" * 1000)
        raise RuntimeError("the bench failed")  # removed all the same
    assert not made.exists()


def test_bench_commits_leaves_nothing_in_the_temporary_directory(tmp_path: Path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "bench", "commits", "--commits", "20",
         "--events", "1000"],
        capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temporary)},
        check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.splitlines()[-1])["commits"] == 20
    assert list(temporary.iterdir()) == []


def test_bench_month_times_every_stage_and_leaves_nothing_behind(tmp_path: Path):
    """A small month: each stage timed, the counts those stages printed, RSS sampled while
    the run went, and the working files (CSV, lake, alerts) removed at the end."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "bench", "month", "--events", "150000",
         "--json"],
        capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temporary)},
        check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    figures = json.loads(ran.stdout.splitlines()[-1])
    assert figures["events"] + figures["rejected"] == 150_000
    for stage in ("floor_seconds", "run_detect_seconds", "report_s", "report_exclude_bots_s"):
        assert figures[stage] > 0, stage
    assert figures["first_week_events"] == figures["events"]  # one simulated day, in that week
    assert figures["ratio_to_floor"] == pytest.approx(
        figures["run_detect_seconds"] / figures["floor_seconds"], rel=0.1
    )
    assert 0 < figures["rss_first_half_peak_mb"] <= figures["peak_rss_mb"] + 1
    assert figures["hudi_data_bytes"] > 0
    assert figures["floor_parquet_bytes"] > 0
    assert list(temporary.iterdir()) == []


def test_bench_keep_is_the_directory_kept(tmp_path: Path):
    kept = tmp_path / "kept"
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "bench", "commits", "--commits", "20",
         "--events", "1000", "--keep", str(kept)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert any(kept.iterdir())
