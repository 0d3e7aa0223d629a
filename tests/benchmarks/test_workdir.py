"""A benchmark's files: kept in the --keep directory given, removed with the temporary directory
otherwise (a 10 M-event bench writes gigabytes)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecomwatch.benchmarks.workdir import bench_workdir
from tests.conftest import rees46_file


def test_a_given_workdir_is_kept_and_a_temporary_one_removed(tmp_path: Path):
    given = tmp_path / "kept"
    with bench_workdir(given, "x-") as base:
        (base / "traffic.csv").write_text("cached")
    assert (given / "traffic.csv").read_text() == "cached"
    with pytest.raises(RuntimeError), bench_workdir(None, "x-") as made:
        (made / "big").write_bytes(b"0" * 1000)
        raise RuntimeError("the bench failed")  # removed all the same
    assert not made.exists()


def _bench_in(temporary: Path, *args: str) -> dict:
    """`ecomwatch bench ARGS` with `temporary` as the system's temporary directory (made here);
    the figures it printed."""
    temporary.mkdir()
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "bench", *args],
        capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temporary)},
        check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout.splitlines()[-1])


def test_bench_commits_leaves_nothing_in_the_temporary_directory(tmp_path: Path):
    temporary = tmp_path / "tmp"
    figures = _bench_in(temporary, "commits", "--commits", "20", "--events", "1000")
    assert figures["commits"] == 20
    assert list(temporary.iterdir()) == []


def test_bench_month_times_every_stage_and_leaves_nothing_behind(tmp_path: Path):
    """A small month: each stage timed, the counts those stages printed, RSS sampled while
    the run went, and the working files (CSV, lake, alerts) removed at the end."""
    temporary = tmp_path / "tmp"
    figures = _bench_in(temporary, "month", "--events", "150000", "--json")
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


def test_bench_month_times_a_file_the_user_brings(tmp_path: Path):
    """`--input`: the stages timed on a real REES46 file (its first 20,000 rows from Nov 1, then
    rows from late in the month, with its real defects) instead of a simulated month; its first
    week counted from its own first day; the file left as it was."""
    real = rees46_file("cosmetics_2019-Nov")
    before = hashlib.sha256(real.read_bytes()).hexdigest()
    rows = len(real.read_text().splitlines()) - 1  # less the header
    temporary = tmp_path / "tmp"
    figures = _bench_in(temporary, "month", "--input", str(real), "--json")
    assert figures["input"] == str(real)
    assert figures["events"] + figures["rejected"] == rows
    assert figures["rejected"] >= 1  # its last row has a time and nothing else
    assert 0 < figures["first_week_events"] < figures["events"]
    assert figures["csv_bytes"] == real.stat().st_size
    assert hashlib.sha256(real.read_bytes()).hexdigest() == before
    assert list(temporary.iterdir()) == []


def test_bench_month_on_a_file_without_one_good_row_says_so(tmp_path: Path):
    empty = tmp_path / "empty.csv"
    empty.write_text("event_time,event_type,product_id,category_id,category_code,brand,price,"
                     "user_id,user_session\nnot a time,view,1,2,,,1.0,3,s\n")  # fmt: skip
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "bench", "month", "--input", str(empty)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 1
    assert "no event of" in ran.stderr and "1 rejected" in ran.stderr


def test_bench_month_on_a_file_run_cannot_read_says_why(tmp_path: Path):
    unreadable = tmp_path / "notes.csv"
    unreadable.write_text("a\nb\n")
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "bench", "month", "--input", str(unreadable)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 1
    assert "expected the REES46 columns" in ran.stderr  # `run`'s own reason, passed on


def test_bench_keep_is_the_directory_kept(tmp_path: Path):
    kept = tmp_path / "kept"
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "bench", "commits", "--commits", "20",
         "--events", "1000", "--keep", str(kept)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert any(kept.iterdir())
