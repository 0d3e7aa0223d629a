"""The command line as a user runs it: help, run, report formats, exit codes, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "sample.csv.gz"
    result = cli("simulate", "--events", "20000", "--out", str(path), "--seed", "3")
    assert result.returncode == 0, result.stderr
    return path


def test_help_lists_the_commands():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("run", "report", "simulate", "bench", "demo"):
        assert command in result.stdout


def test_benchmarks_are_one_family():
    result = cli("bench", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("ingest", "serve", "judging", "commits", "kinesis"):
        assert command in result.stdout
    flat = cli("bench-serve", "--help")
    assert flat.returncode == 2  # the flat names are gone


def test_run_then_report_json_html_and_table(sample, tmp_path):
    lake = tmp_path / "lake"
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
        "2019-11-01 00:00:00 UTC,view,1,2,,,1.0,3,s\n"
        "not a time,view,1,2,,,1.0,3,s\n"
    )
    dead = tmp_path / "rejected.jsonl"
    result = cli(
        "run", str(sample), str(bad), "--lake", str(lake), "--dead-letter", str(dead), "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["read"] == summary["accepted"] + summary["rejected"] == 20_002
    assert summary["rejected"] == 1
    rejected = [json.loads(line) for line in dead.read_text().splitlines()]
    assert rejected[0]["line"] == 3 and rejected[0]["reason"] == "bad_event_time"
    assert rejected[0]["source"].endswith("bad.csv") and rejected[0]["raw"].startswith("not a time")

    report = cli("report", "--lake", str(lake), "--format", "json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert set(data) >= {
        "totals",
        "hourly",
        "funnel",
        "cart_abandonment",
        "categories",
        "top_level_categories",
        "brands",
        "top_products",
    }
    assert data["totals"]["events"] == 20_001
    assert data["totals"]["rejected"] == 1

    page = tmp_path / "r.html"
    html = cli("report", "--lake", str(lake), "--format", "html", "--out", str(page))
    assert html.returncode == 0, html.stderr
    text = page.read_text()
    assert "<script" in text
    assert 'src="http' not in text  # plotly.js is inline: the page opens offline

    table = cli("report", "--lake", str(lake), "--since", "2019-11-01T06:00:00Z")
    assert table.returncode == 0, table.stderr
    assert "Conversion funnel" in table.stdout


def test_failed_input_gives_exit_1_and_others_are_ingested(sample, tmp_path):
    result = cli(
        "run", str(tmp_path / "nope.csv"), str(sample), "--lake", str(tmp_path / "lake"), "--json"
    )
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["failed"] == 1
    assert summary["accepted"] == 20_000


def test_clear_errors_for_bad_usage(tmp_path):
    result = cli("report", "--lake", str(tmp_path))
    assert result.returncode == 2
    assert "not an ecomwatch lake" in result.stderr
    result = cli("report", "--lake", str(tmp_path), "--since", "yesterday")
    assert result.returncode == 2 and "--since" in result.stderr
    bad_env = cli(
        "run",
        str(tmp_path / "x.csv"),
        "--lake",
        str(tmp_path / "l"),
        env={"ECOMWATCH_ENGINE__LATENESS_S": "-1"},
    )
    assert bad_env.returncode == 2 and "lateness_s" in bad_env.stderr


def test_in_a_log_nothing_is_cut_and_each_failure_is_one_stderr_line(sample, tmp_path):
    """Not a terminal (CI, cron, a pipe): whole paths and reasons in the table, and one
    `error: PATH: reason` line per failed input on stderr."""
    broken = tmp_path / ("a-long-directory-name-" * 4) / "incoming-2019-11-damaged.csv.gz"
    broken.parent.mkdir()
    broken.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    result = cli("run", str(broken), str(sample), "--lake", str(tmp_path / "lake"))
    assert result.returncode == 1
    row = next(line for line in result.stdout.splitlines() if "damaged.csv.gz" in line)
    assert str(broken) in row and "failed" in row
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {broken}: ")
    assert errors[0].split(": ", 2)[2] in row  # the same whole reason in the table
