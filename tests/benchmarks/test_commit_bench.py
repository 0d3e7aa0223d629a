"""`ecomwatch bench commits`, briefly: both tables hold every row; maintenance shrinks
the timeline and the rollups."""

from __future__ import annotations

from pathlib import Path

from ecomwatch.benchmarks.commit_bench import run_commit_bench


def test_both_tables_hold_every_row_and_the_maintained_one_fewer_files(tmp_path: Path):
    figures = run_commit_bench(commits=40, events=2_000, workdir=tmp_path)
    maintained, never = figures["maintained"], figures["never_maintained"]
    rows = 40 * figures["events_per_commit"]
    assert maintained["rows_read_back"] == never["rows_read_back"] == rows
    assert never["timeline_files"] == 1 + 3 * 40  # hoodie.properties and three per commit
    assert maintained["timeline_files"] <= 1 + 3 * 30
    assert maintained["files"] < never["files"]
    assert figures["disk_ratio"] == round(maintained["megabytes"] / never["megabytes"], 3)
