"""The store written while the pipeline runs: sends return at once, close waits until the store
holds everything, a crash leaves a journal that the next opening writes, and a DynamoDB server
stopped in the middle of a run loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ecomwatch import testing_servers as servers
from ecomwatch.sinks.alert_store import AlertStore
from ecomwatch.sinks.store_writer import StoreWriter
from ecomwatch.sinks.stores import journal_file
from tests.dynamodb_servers import dynamodb_client
from tests.kinesis_servers import CREDENTIALS
from tests.sinks.test_stores import BASE


def _alerts(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {**BASE, "alert_id": f"a{i}", "entity": f"198.51.{i // 250}.{i % 250}"}
        for i in range(start, start + n)
    ]


class SlowStore(AlertStore):
    """A SQLite store whose every write takes a while, like a remote one."""

    def add(self, alerts: list[dict[str, Any]]) -> None:
        time.sleep(0.2)
        super().add(alerts)


def test_sends_return_at_once_and_close_waits_for_the_store(tmp_path: Path):
    store = SlowStore(tmp_path / "alerts.db")
    writer = StoreWriter(store, tmp_path / "journal.jsonl")
    started = time.perf_counter()
    for batch in range(10):
        writer.send(_alerts(20, batch * 20))
    assert time.perf_counter() - started < 0.2  # ten sends, none waits for a 0.2-s write
    writer.close()
    again = AlertStore(tmp_path / "alerts.db")
    assert {a["alert_id"] for a in again.all_alerts()} == {f"a{i}" for i in range(200)}
    assert writer.written == 200 and not (tmp_path / "journal.jsonl").exists()


class BrokenStore(AlertStore):
    def add(self, alerts: list[dict[str, Any]]) -> None:
        raise OSError("disk full")


def test_what_a_crashed_run_did_not_store_is_stored_at_the_next_opening(tmp_path: Path):
    """A store that cannot write keeps every sent alert in the journal (close raises); the next
    writer on that journal writes them before anything new."""
    journal = journal_file(str(tmp_path / "alerts.db"))
    writer = StoreWriter(BrokenStore(tmp_path / "alerts.db"), journal)
    writer.send(_alerts(30))
    writer.send(_alerts(10, 30))
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert len(journal.read_text().splitlines()) == 40
    again = StoreWriter(AlertStore(tmp_path / "alerts.db"), journal)
    assert again.recovered == 40 and not journal.exists()
    again.send(_alerts(5, 40))
    again.close()
    assert len(AlertStore(tmp_path / "alerts.db").all_alerts()) == 45


@pytest.mark.integration
def test_a_dynamodb_stopped_in_the_middle_of_a_run_loses_nothing(tmp_path: Path):
    """`run --store dynamodb://…` while the server stops after its first alerts: the lake and
    the alerts file are complete, the run says what it kept and exits 1; the next run (nothing
    new to ingest) with the server back writes what was kept: the store then holds every
    alert of the file."""
    env = {**os.environ, **CREDENTIALS}
    data, lake, alerts = tmp_path / "attacks.csv", tmp_path / "lake", tmp_path / "alerts.jsonl"
    config = tmp_path / "often.toml"
    config.write_text("[detect]\njudge_rows = 20000\n")  # alerts all along the run
    cli = [sys.executable, "-m", "ecomwatch.cli.main"]
    subprocess.run(
        [*cli, "simulate", "--events", "200000", "--attacks", "--seed", "3", "--out", str(data)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    run = [*cli, "run", str(data), "--lake", str(lake), "--alerts", str(alerts),
           "--store", "dynamodb://fault", "--config", str(config)]  # fmt: skip
    path, port = tmp_path / "dynalite-data", servers.free_port()
    with servers.dynalite(path, port) as url:
        env["AWS_ENDPOINT_URL"] = url
        client = dynamodb_client(url)
        running = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and running.poll() is None:
            try:
                if client.scan(TableName="fault", Limit=50)["Items"]:
                    break
            except client.exceptions.ResourceNotFoundException:
                pass
            time.sleep(0.1)
    _, err = running.communicate(timeout=600)
    assert running.returncode == 1, err.decode()
    assert "could not be made" in err.decode() and "kept in" in err.decode()
    raised = {json.loads(line)["alert_id"] for line in alerts.read_text().splitlines()}
    with servers.dynalite(path, port) as url:
        env["AWS_ENDPOINT_URL"] = url
        again = subprocess.run(run, env=env, capture_output=True, text=True, check=False)
        assert again.returncode == 0, again.stderr
        assert "left by an earlier run made now" in again.stderr
        stored = []
        for page in dynamodb_client(url).get_paginator("scan").paginate(TableName="fault"):
            stored += [
                i["alert_id"]["S"] for i in page["Items"] if i["sk"]["S"].startswith("ALERT#")
            ]
    assert set(stored) == raised and len(raised) > 100
