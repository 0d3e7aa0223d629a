"""Kill a real `ecomwatch run kinesis://…` with SIGKILL mid-stream; the rerun ends with the
same table, alerts and report as an uninterrupted run (kinesis-local, the faithful server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecomwatch.serve.stream_replay import replay_to_stream
from ecomwatch.sinks.jsonl import read_json_lines
from tests.kinesis_servers import CREDENTIALS, create_stream, use_endpoint
from tests.sources.test_kinesis import shop_file
from tests.test_crash_resume import commits, report, table_rows

pytestmark = pytest.mark.integration


def consumer(stream: str, lake: Path, alerts: Path, endpoint: str) -> list[str]:
    return [
        sys.executable, "-m", "ecomwatch.cli.main", "run", f"kinesis://{stream}",
        "--lake", str(lake), "--alerts", str(alerts), "--until-caught-up", "--json",
    ]  # fmt: skip


def final_alerts(path: Path) -> dict[str, str]:
    """Each alert's last version: id → severity (an escalation appends a new line)."""
    return {a["alert_id"]: a["severity"] for a in read_json_lines(path)}


def test_sigkill_mid_stream_then_resume_gives_the_same_table(
    kinesis_local: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(monkeypatch, kinesis_local)
    env = {
        **os.environ,
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": kinesis_local,
        # Small calls and frequent commits, so that a kill lands between commits.
        "ECOMWATCH_KINESIS__TARGET_EVENTS_PER_CALL": "1500",
        "ECOMWATCH_KINESIS__IDLE_POLL_S": "0.2",
        "ECOMWATCH_SERVE__COMMIT_SECONDS": "0.3",
    }
    name = f"crash-{time.monotonic_ns()}"
    create_stream(kinesis_local, name, 2)
    data = shop_file(tmp_path, 24_000, seed=11)
    header, *body = data.read_bytes().splitlines()
    scraper = [  # for the detector to find
        f"2019-11-01 00:{i // 60:02d}:{i % 60:02d} UTC,view,{900000 + i},2053013555631882655,,,"
        f"1.00,77,scrape,203.0.113.7,curl/8.0".encode()
        for i in range(0, 2000, 2)
    ]
    data.write_bytes(b"\n".join([header, *sorted(body + scraper)]) + b"\n")
    sent = replay_to_stream([data], name, per_record=100)
    assert sent.events == 25_000

    reference, ref_alerts = tmp_path / "reference", tmp_path / "ref-alerts.jsonl"
    done = subprocess.run(
        consumer(name, reference, ref_alerts, kinesis_local), env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    # Two shards read side by side, one ahead of the other: none of the sorted file is late.
    assert figures["accepted"] == 25_000 and figures["late"] == 0
    expected_rows = sorted(table_rows(reference))
    assert len(expected_rows) == 25_000
    assert "203.0.113.7" in ref_alerts.read_text()

    lake, alerts = tmp_path / "lake", tmp_path / "alerts.jsonl"
    kills = 0
    for wait_for in (2, 4):
        child = subprocess.Popen(
            consumer(name, lake, alerts, kinesis_local), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while commits(lake) < wait_for and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait()
        if commits(lake):
            assert set(table_rows(lake)) <= set(expected_rows)  # whole commits only
    assert kills >= 1, "the consumer finished before it could be killed"

    resumed = subprocess.run(
        consumer(name, lake, alerts, kinesis_local), env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(table_rows(lake)) == expected_rows
    assert final_alerts(alerts) == final_alerts(ref_alerts)
    assert report(lake) == report(reference)
