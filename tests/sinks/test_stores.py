"""The alert state stores behind one protocol: SQLite (a file) and DynamoDB (moto's server and
dynalite on loopback) keep the same alerts, escalations and blocks; DynamoDB's items are read
back through the API as documented; a DynamoDB that goes away loses nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ecomwatch import testing_servers as servers
from ecomwatch.sinks.dynamodb_store import DynamoAlertStore
from ecomwatch.sinks.stores import AlertStateStore, open_store
from tests.dynamodb_servers import dynamodb_client
from tests.kinesis_servers import use_endpoint

pytestmark = pytest.mark.integration

BASE: dict[str, Any] = {
    "alert_id": "a1",
    "rule": "fast-scraper",
    "severity": "high",
    "entity_type": "ip",
    "entity": "198.51.100.1",
    "first_seen": "2019-11-01T00:00:00Z",
    "last_seen": "2019-11-01T00:01:00Z",
    "detected_at": "2019-11-01T00:01:00Z",
    "count": 10,
    "evidence": {"views": 120, "ratio": 0.95},
    "explanation": "x",
    "labels": ["scraper"],
}


def _alerts() -> list[dict[str, Any]]:
    """An alert, its escalation, an older version arriving late, a session alert (never
    blocked) and a subnet alert at low (not blocked either)."""
    return [
        BASE,
        {**BASE, "severity": "critical", "count": 50, "last_seen": "2019-11-01T00:05:00Z",
         "detected_at": "2019-11-01T00:05:00Z", "evidence": {"views": 600, "ratio": 0.99}},
        {**BASE, "severity": "medium", "count": 5},
        {**BASE, "alert_id": "s1", "entity_type": "session", "entity": "sess-1"},
        {**BASE, "alert_id": "n1", "entity_type": "subnet", "entity": "198.51.100.0/24",
         "severity": "low"},
    ]  # fmt: skip


@pytest.fixture(params=["sqlite", "moto", "dynalite"])
def store(request, tmp_path, monkeypatch) -> AlertStateStore:
    if request.param == "sqlite":
        return open_store(str(tmp_path / "alerts.db"))
    endpoint = request.getfixturevalue("moto_dynamodb" if request.param == "moto" else "dynalite")
    use_endpoint(monkeypatch, endpoint)
    table = f"ecomwatch-{request.node.name.split('[')[0][-40:]}-{id(tmp_path) % 10**6}"
    return open_store(f"dynamodb://{table}", beside=tmp_path / "alerts.jsonl")


def test_incidents_keep_their_latest_record_and_actions_apart(store):
    record = {"incident_id": "i1", "revision": 1, "alerts": 1, "state": "open",
              "severity": "high", "merged_into": None}  # fmt: skip
    later = {**record, "revision": 2, "alerts": 4}
    merged = {"incident_id": "i1", "revision": 3, "alerts": 0, "state": "merged",
              "merged_into": "i0"}  # fmt: skip
    store.add_incidents([record, later])
    store.add_incidents([merged])
    store.add_incidents([record, later])  # a replay: older versions change nothing
    assert store.incident_records() == {"i1": merged}
    store.add_incident_action({"incident_id": "i1", "action": "acknowledge", "by": "dana"})
    store.add_incident_action({"incident_id": "i1", "action": "resolve", "by": "lee"})
    assert store.incident_actions() == [{"incident_id": "i1", "action": "resolve", "by": "lee"}]
    assert store.incident_records() == {"i1": merged}


def test_one_alert_per_id_at_its_highest_severity_and_a_replay_changes_nothing(store):
    store.add(_alerts())
    first = store.all_alerts()
    store.add(_alerts()[::-1])  # a replay, in another order
    assert store.all_alerts() == first
    (alert,) = store.alerts_about("198.51.100.1")
    assert (alert["severity"], alert["count"], alert["last_seen"]) == (
        "critical", 50, "2019-11-01T00:05:00Z",
    )  # fmt: skip
    assert alert["evidence"] == {"views": 600, "ratio": 0.99} and alert["labels"] == ["scraper"]
    assert {a["alert_id"] for a in first} == {"a1", "s1", "n1"}
    assert store.alerts_about("203.0.113.9") == []


def test_blocks_ips_and_subnets_at_medium_or_above_until_they_expire(store):
    store.add(_alerts())
    (block,) = store.blocklist()  # as of the latest event time seen
    assert block == {
        "entity_type": "ip", "entity": "198.51.100.1", "rule": "fast-scraper",
        "severity": "critical", "alert_id": "a1", "expires_at": "2019-11-02T00:05:00Z",
    }  # fmt: skip
    assert store.blocklist(datetime(2019, 11, 2, 0, 5, 1, tzinfo=UTC)) == []  # expired


def test_dynamodb_items_follow_the_documented_key_design(any_dynamodb, monkeypatch, tmp_path):
    use_endpoint(monkeypatch, any_dynamodb)
    store = DynamoAlertStore("ecomwatch-keys", failures=tmp_path / "f.jsonl")
    store.add(_alerts())
    client = dynamodb_client(any_dynamodb)
    description = client.describe_table(TableName="ecomwatch-keys")["Table"]
    assert [k["AttributeName"] for k in description["KeySchema"]] == ["pk", "sk"]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    items = client.query(
        TableName="ecomwatch-keys",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "ENTITY#198.51.100.1"}},
    )["Items"]
    by_sk = {i["sk"]["S"]: i for i in items}
    assert set(by_sk) == {"ALERT#a1"}  # the entity's state comes from its alerts
    assert by_sk["ALERT#a1"]["severity"]["S"] == "critical"
    assert store.entity_state("198.51.100.1") == [
        {"entity_type": "ip", "entity": "198.51.100.1", "alerts": 1, "severity": "critical",
         "last_seen": "2019-11-01T00:05:00Z"},
    ]  # fmt: skip
    block = client.get_item(
        TableName="ecomwatch-keys", Key={"pk": {"S": "BLOCK#ip"}, "sk": {"S": "198.51.100.1"}}
    )["Item"]
    expires = datetime(2019, 11, 2, 0, 5, tzinfo=UTC)
    assert int(block["ttl"]["N"]) == int(expires.timestamp())
    if store.ttl_enabled:  # moto has the TTL API; dynalite has none (reads filter expiry)
        ttl = client.describe_time_to_live(TableName="ecomwatch-keys")
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "ttl"
        assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] in ("ENABLED", "ENABLING")


def test_dynamodb_ttl_is_enabled_where_the_server_has_it(
    moto_dynamodb, dynalite, monkeypatch, tmp_path
):
    use_endpoint(monkeypatch, moto_dynamodb)
    assert DynamoAlertStore("ecomwatch-ttl", failures=tmp_path / "f").ttl_enabled is True
    use_endpoint(monkeypatch, dynalite)
    assert DynamoAlertStore("ecomwatch-ttl", failures=tmp_path / "f").ttl_enabled is False


def test_a_dynamodb_that_goes_away_loses_nothing(monkeypatch, tmp_path: Path):
    """The server stops mid-run: writes are kept locally (quickly: the first failure stops the
    tries), and the next opening of the store, with the server back, sends them."""
    path, port = tmp_path / "dynalite-data", servers.free_port()
    failures = tmp_path / "alerts.jsonl.t-failures.jsonl"
    alerts = [{**BASE, "alert_id": f"a{n}", "entity": f"198.51.100.{n}"} for n in range(40)]
    with servers.dynalite(path, port) as url:
        use_endpoint(monkeypatch, url)
        store = DynamoAlertStore("ecomwatch-fault", failures=failures, attempts=2)
        store.add(alerts[:10])
    started = datetime.now(UTC)
    store.add(alerts[10:])  # the server is gone
    assert (datetime.now(UTC) - started).total_seconds() < 30
    assert store.failed == 31 and failures.exists()  # 30 alerts + the latest event time
    assert store.unreachable is not None
    with servers.dynalite(path, port) as url:
        again = DynamoAlertStore("ecomwatch-fault", failures=failures, attempts=2)
        assert again.resent == 31 and again.failed == 0 and not failures.exists()
        assert {a["alert_id"] for a in again.all_alerts()} == {a["alert_id"] for a in alerts}
        assert len(again.blocklist()) == 40


def test_the_command_line_reads_and_writes_both_stores_alike(dynalite, tmp_path):
    """detect twice (a replay), then blocklist, explain and report --exclude-bots: the same
    answers from a SQLite file and from a DynamoDB table (dynalite: moto's transactions copy
    the whole table for each write, too slow for a run's thousand alerts)."""
    import json
    import os
    import subprocess
    import sys

    from tests.kinesis_servers import CREDENTIALS

    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": dynalite}

    def cli(*args: str) -> str:
        ran = subprocess.run(
            [sys.executable, "-m", "ecomwatch.cli.main", *args],
            capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, (args, ran.stderr)
        return ran.stdout

    data = tmp_path / "attacks.csv"
    cli("simulate", "--events", "20000", "--days", "0.05", "--attacks", "--seed", "5",
        "--out", str(data))  # fmt: skip
    cli("run", str(data), "--lake", str(tmp_path / "lake"), "--alerts", "run-alerts.jsonl")
    answers = {}
    for store in (str(tmp_path / "alerts.db"), "dynamodb://ecomwatch-cli"):
        for _ in range(2):
            cli("detect", str(data), "--alerts", "alerts.jsonl", "--store", store)
        blocks = json.loads(cli("blocklist", "--store", store, "--format", "json"))
        ip = blocks[0]["entity"]
        explained = json.loads(cli("explain", ip, "--store", store, "--json"))
        report = json.loads(
            cli("report", "--lake", "lake", "--exclude-bots", "--store", store, "--format", "json")
        )
        listed = [
            json.loads(line)
            for line in cli(
                "incidents", "list", "--store", store, "--json", "--limit", "1000"
            ).splitlines()
        ]
        first = listed[0]["incident_id"]
        shown = json.loads(cli("incidents", "show", first, "--store", store, "--json"))
        answers[store.split(":")[0]] = (
            blocks, explained, report["excluded_flagged_events"], listed,
            sorted(a["alert_id"] for a in shown["alert_lines"]),
        )  # fmt: skip
    sqlite, dynamodb = answers.values()
    assert sqlite == dynamodb
    assert len(sqlite[0]) > 10 and sqlite[1]["alerts"] and sqlite[2] > 0
    # The store keeps the incidents the alerts file's log has, and each incident's alerts.
    from_file = cli("incidents", "list", "--alerts", "alerts.jsonl", "--json", "--limit", "1000")
    assert sqlite[3] == [json.loads(line) for line in from_file.splitlines()]
    assert len(sqlite[4]) == listed[0]["alerts"]


def test_a_batch_of_stored_new_and_escalated_alerts_keeps_the_highest_of_each(
    any_dynamodb, monkeypatch, tmp_path, request
):
    """70 alerts (140 writes: more than one transaction of 100), then a batch mixing all of
    them again with 30 escalations, 40 new ones and 30 older versions: a transaction cancelled
    by the stored ones still writes the others. moto takes transactions (copying the whole
    table for each write of one, so the table is kept small here); dynalite has none (one
    call a write)."""
    use_endpoint(monkeypatch, any_dynamodb)
    store = DynamoAlertStore("ecomwatch-mixed", failures=tmp_path / "f.jsonl")
    first = [{**BASE, "alert_id": f"m{n}", "entity": f"198.51.{n // 200}.{n % 200}"}
             for n in range(70)]  # fmt: skip
    store.add(first)
    escalated = [{**a, "severity": "critical", "count": 99} for a in first[:30]]
    new = [{**BASE, "alert_id": f"n{n}", "entity": f"203.0.113.{n}"} for n in range(40)]
    store.add([*first, *escalated, *new, *[{**a, "severity": "low"} for a in first[30:60]]])
    kept = {a["alert_id"]: a for a in store.all_alerts()}
    assert len(kept) == 110 and store.failed == 0
    assert all(kept[a["alert_id"]]["severity"] == "critical" for a in escalated)
    assert all(kept[a["alert_id"]]["severity"] == "high" for a in first[30:])
    blocks = {b["entity"]: b for b in store.blocklist()}
    assert len(blocks) == 110 and blocks[first[0]["entity"]]["severity"] == "critical"
    on_moto = request.node.callspec.params["any_dynamodb"] == "moto_dynamodb"
    assert store.transactions is on_moto
