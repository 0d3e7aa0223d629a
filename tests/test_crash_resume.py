"""Kill a real `ecomwatch run` with SIGKILL mid-run; the rerun must end with the same table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hudi import HudiTableBuilder

from ecomwatch.analytics.report import build_report, connect, define_lake_view
from ecomwatch.lake.open import open_lake
from ecomwatch.schema import EVENT_SCHEMA
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic

pytestmark = pytest.mark.integration

ENV = {
    **os.environ,
    "ECOMWATCH_ENGINE__CHECKPOINT_ROWS": "15000",
    "ECOMWATCH_DECODE__CHUNK_BYTES": "262144",
}


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", *args],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )


EVENT_COLUMNS = ", ".join(EVENT_SCHEMA.names)


def table_rows(lake: Path) -> list[tuple]:
    """Every event in the table (Hudi meta columns aside: commit times differ between runs)."""
    files = open_lake(lake).data_files()
    con = connect()
    return con.execute(
        f"SELECT {EVENT_COLUMNS} FROM read_parquet({files}) ORDER BY source_pos"
    ).fetchall()


def report(lake: Path) -> dict:
    con = connect()
    define_lake_view(con, open_lake(lake).data_files())
    return build_report(con)


def commits(lake: Path) -> int:
    timeline = lake / ".hoodie"
    return len(list(timeline.glob("*.commit"))) if timeline.exists() else 0


def dead_letter(lake: Path) -> str:
    return (lake / ".hoodie" / ".aux" / "ecomwatch" / "dead_letter.jsonl").read_text()


def test_sigkill_mid_run_then_resume_gives_the_same_table(tmp_path: Path):
    data = tmp_path / "traffic.csv"
    write_traffic(generate(TrafficSpec(events=150_000, seed=5, days=1)), data)
    # Damage a few rows so the dead letter takes part too, and add a scraper for the detector.
    lines = data.read_bytes().split(b"\n")
    for i in range(100, len(lines) - 1, 10_000):
        lines[i] = lines[i].replace(b",view,", b",v1ew,")
    scraper = [
        f"2019-11-01 12:{i // 60:02d}:{i % 60:02d} UTC,view,{900000 + i},2053013555631882655,,,"
        f"1.00,77,scrape,203.0.113.7,curl/8.0".encode()
        for i in range(0, 3000, 2)
    ]
    header, body = lines[0], [line for line in lines[1:] if line]
    data.write_bytes(b"\n".join([header, *sorted(body + scraper)]) + b"\n")
    total = len(body) + len(scraper)

    reference = tmp_path / "reference"
    done = run(
        [
            "run",
            str(data),
            "--lake",
            str(reference),
            "--alerts",
            str(tmp_path / "ref-alerts.jsonl"),
            "--json",
        ]
    )
    assert done.returncode == 0, done.stderr
    expected_rows = table_rows(reference)
    expected_dead = dead_letter(reference)
    assert len(expected_rows) + expected_dead.count("\n") == total
    expected_alerts = (tmp_path / "ref-alerts.jsonl").read_text()
    assert "203.0.113.7" in expected_alerts

    lake = tmp_path / "lake"
    alerts = tmp_path / "alerts.jsonl"
    kills = 0
    for wait_for in (2, 5):
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ecomwatch.cli.main",
                "run",
                str(data),
                "--lake",
                str(lake),
                "--alerts",
                str(alerts),
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while commits(lake) < wait_for and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait()
        # Between the kill and the rerun the table is readable — by hudi-rs too — and holds
        # whole commits only: every row is one of the reference run's.
        if commits(lake):
            partial = table_rows(lake)
            assert set(partial) <= set(expected_rows)
            snapshot = HudiTableBuilder.from_base_uri(str(lake)).build().read()
            assert sum(b.num_rows for b in snapshot) == len(partial)
    assert kills >= 1, "the run finished before it could be killed; make the input larger"

    resumed = run(["run", str(data), "--lake", str(lake), "--alerts", str(alerts), "--json"])
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["sources"][0]["status"] in ("ingested", "already ingested")
    assert table_rows(lake) == expected_rows
    assert dead_letter(lake) == expected_dead
    assert alerts.read_text() == expected_alerts  # alerts too: none lost, none doubled
    incidents = (tmp_path / "alerts.incidents.jsonl").read_text()
    assert incidents and incidents == (tmp_path / "ref-alerts.incidents.jsonl").read_text()
    assert report(lake) == report(reference)

    again = run(["run", str(data), "--lake", str(lake), "--json"])
    assert json.loads(again.stdout)["sources"][0]["status"] == "already ingested"
    assert table_rows(lake) == expected_rows
