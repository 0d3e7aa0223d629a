"""The collector and API on a real uvicorn server on loopback: auth, limits, partial
acceptance, gzip, 429, metrics, alerts, and SIGTERM losing nothing that got a 2xx."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ecomwatch.lake.open import open_lake
from tests.serve.conftest import TOKEN, start_server

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/119.0.0.0 Safari/537.36"


def event(i: int, *, ip: str = "198.51.100.7", kind: str = "view", **extra) -> dict:
    row = {
        "event_time": f"2019-11-01T10:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "event_type": kind,
        "product_id": 1_000_000 + i,
        "category_id": 2053013555631882655,
        "category_code": "electronics.smartphone",
        "brand": "acme",
        "price": 19.99,
        "user_id": 500 + i % 7,
        "user_session": f"s-{i % 7}",
        "ip": ip,
        "user_agent": CHROME,
    }
    row.update(extra)
    return row


def fast_scraper(ip: str) -> list[dict]:
    """300 product views from one IP in five seconds of event time."""
    return [
        {**event(i, ip=ip), "event_time": f"2019-11-01T11:00:{i // 60:02d}Z",
         "user_session": "scrape", "product_id": 2_000_000 + i}
        for i in range(300)
    ]  # fmt: skip


def table_rows(lake: Path) -> int:
    files = open_lake(lake).data_files()
    return pq.ParquetDataset(files).read(columns=["event_id"]).num_rows if files else 0


def test_auth_is_required_and_compared_against_the_token(server):
    status, _, _ = server.request("POST", "/v1/events", b"[]", token=None)
    assert status == 401
    status, headers, _ = server.request("POST", "/v1/events", b"[]", token="wrong")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert server.request("GET", "/api/alerts", token=None)[0] == 401
    assert server.request("GET", "/metrics", token=None)[0] == 401
    assert server.request("GET", "/healthz", token=None)[0] == 200  # probes need no token
    status, body = server.post_events([event(1)])
    assert status == 200 and body["accepted"] == 1


def test_invalid_rows_are_reported_by_index_and_valid_ones_accepted(server):
    rows = [event(0), {**event(1), "event_type": "teleport"}, event(2), "not an object",
            {**event(3), "price": "free"}]  # fmt: skip
    status, body = server.post_events(rows)
    assert status == 207
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 3, 4]
    assert {r["reason"] for r in body["rejected"]} >= {"unknown_event_type", "bad_json"}
    status, body = server.post_events([{"event_type": "view"}])
    assert status == 422 and body["accepted"] == 0


def test_gzip_ndjson_and_limits(server):
    ndjson = "\n".join(json.dumps(event(i)) for i in range(50)).encode()
    status, _, raw = server.request(
        "POST", "/v1/events", gzip.compress(ndjson), headers={"Content-Encoding": "gzip"}
    )
    assert status == 200 and json.loads(raw)["accepted"] == 50
    status, _, raw = server.request(
        "POST", "/v1/events", b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    assert status == 400 and "gzip" in json.loads(raw)["error"]
    # A body announced larger than the limit is refused before it is read.
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/v1/events")
    connection.putheader("Authorization", f"Bearer {TOKEN}")
    connection.putheader("Content-Length", str(11 << 20))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    many = json.dumps([event(i) for i in range(10_001)]).encode()
    status, _, raw = server.request("POST", "/v1/events", many)
    assert status == 413 and "10000" in json.loads(raw)["error"]
    status, _, raw = server.request("POST", "/v1/events", b"[1, 2")
    assert status == 400


def test_a_full_queue_answers_429_with_retry_after(tmp_path: Path):
    server = start_server(
        tmp_path / "lake",
        env={"ECOMWATCH_SERVE__QUEUE_EVENTS": "1000", "ECOMWATCH_SERVE__BATCH_SECONDS": "5",
             "ECOMWATCH_SERVE__BATCH_ROWS": "100000"},
    )  # fmt: skip
    try:
        batch = [event(i) for i in range(600)]
        statuses = [server.post_events(batch)[0] for _ in range(3)]
        assert statuses[0] == 200 and 429 in statuses
        status, headers, _ = server.request("POST", "/v1/events", json.dumps(batch).encode())
        if status == 429:
            assert headers["retry-after"] == "1"
    finally:
        server.stop()


def test_metrics_alerts_and_entities(server):
    scraper = fast_scraper("203.0.113.66")
    assert server.post_events(scraper)[0] == 200
    deadline = time.monotonic() + 20
    alerts: list = []
    while time.monotonic() < deadline and not alerts:
        alerts = server.get_json("/api/alerts")[1]  # type: ignore[assignment]
        time.sleep(0.2)
    assert any(a["rule"] == "fast-scraper" and a["entity"] == "203.0.113.66" for a in alerts)
    status, entity = server.get_json("/api/entities/ip/203.0.113.66")
    assert status == 200 and entity["alerts"]  # type: ignore[index]
    status, _, text = server.request("GET", "/metrics")
    metrics = text.decode()
    assert status == 200
    assert "ecomwatch_events_accepted_total 300.0" in metrics
    assert 'ecomwatch_alerts_total{rule="fast-scraper",severity=' in metrics
    for name in ("ecomwatch_batches_total", "ecomwatch_batch_latency_seconds_bucket",
                 "ecomwatch_queue_depth_events", "ecomwatch_watermark_lag_seconds",
                 "ecomwatch_lake_commits", "ecomwatch_events_rejected_total"):  # fmt: skip
        assert name in metrics
    status, summary = server.get_json("/api/summary")
    assert summary["events_accepted"] == 300  # type: ignore[index]
    # Its 300 views were counted before the alert came; they are flagged traffic all the same.
    deadline = time.monotonic() + 10
    while server.get_json("/api/summary")[1]["live"]["flagged_share"] < 1.0:  # type: ignore[index]
        assert time.monotonic() < deadline, "the scraper's traffic never counted as flagged"
        time.sleep(0.2)


def test_sigterm_drains_and_every_acknowledged_event_is_in_the_table(tmp_path: Path):
    server = start_server(tmp_path / "lake", env={"ECOMWATCH_SERVE__COMMIT_SECONDS": "30"})
    acknowledged = 0

    def send(start: int) -> int:
        rows = [event(start + i, ip=f"192.0.2.{(start + i) % 250 + 1}") for i in range(500)]
        status, body = server.post_events(rows)
        while status == 429:  # the queue is busy: retry, as a client should
            time.sleep(0.1)
            status, body = server.post_events(rows)
        return body["accepted"] if 200 <= status < 300 else 0

    with ThreadPoolExecutor(4) as pool:
        acknowledged = sum(pool.map(send, range(0, 20_000, 500)))
    stderr = server.stop()
    assert server.process.returncode == 0, stderr
    assert acknowledged == 20_000
    assert table_rows(tmp_path / "lake") == acknowledged
    assert "stopped: 20,000 events committed" in stderr


def test_replay_sends_a_file_and_the_service_commits_it(tmp_path: Path):
    events = Path(__file__).resolve().parents[2] / "examples/rules/scraper-slow-hoarder-office.csv"
    server = start_server(tmp_path / "lake")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ecomwatch.cli.main", "replay", str(events), "--to",
             server.url, "--batch", "200", "--gzip", "--json"],
            capture_output=True, text=True, env={**os.environ, "ECOMWATCH_TOKENS": TOKEN},
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        figures = json.loads(result.stdout)
        assert figures["sent"] == figures["accepted"] == 1325 and figures["requests"] == 7
    finally:
        server.stop()
    assert table_rows(tmp_path / "lake") == 1325


def test_kill_9_keeps_what_was_committed_and_takes_the_detector_process_along(tmp_path: Path):
    lake = tmp_path / "lake"
    server = start_server(lake, env={"ECOMWATCH_SERVE__COMMIT_SECONDS": "0.5"})
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children  # the detector's process (and multiprocessing's resource tracker)
    for start in range(0, 3000, 500):
        status, _ = server.post_events([event(start + i) for i in range(500)])
        assert status == 200
    deadline = time.monotonic() + 30
    while table_rows(lake) < 3000 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert table_rows(lake) == 3000  # committed within a few commit intervals
    server.post_events([event(3000 + i) for i in range(500)])  # maybe committed, maybe not
    server.process.kill()
    server.process.communicate()
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{child}").exists() for child in children):
        assert time.monotonic() < deadline, "the detector process outlived its parent"
        time.sleep(0.2)
    assert table_rows(lake) in (3000, 3500)
    again = start_server(lake)  # the table and its checkpoint are whole: the service resumes
    try:
        assert again.post_events([event(4000)])[0] == 200
    finally:
        assert "events committed" in again.stop()


@pytest.mark.integration
def test_serve_writes_its_alerts_to_a_dynamodb_store_as_they_come(moto_dynamodb, tmp_path: Path):
    """`serve --store dynamodb://…`: the scraper's alert is in the table while the service runs
    (read back through the API), and its stop says how many alert lines it wrote."""
    from tests.dynamodb_servers import dynamodb_client
    from tests.kinesis_servers import CREDENTIALS

    running = start_server(
        tmp_path / "lake",
        env={**CREDENTIALS, "AWS_ENDPOINT_URL": moto_dynamodb},
        extra=("--store", "dynamodb://serve-alerts"),
    )
    scraper = fast_scraper("203.0.113.67")
    assert running.post_events(scraper)[0] == 200
    client = dynamodb_client(moto_dynamodb)
    deadline, items = time.monotonic() + 30, []
    while time.monotonic() < deadline and not items:
        items = client.query(
            TableName="serve-alerts",
            KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
            ExpressionAttributeValues={":pk": {"S": "ENTITY#203.0.113.67"}, ":a": {"S": "ALERT#"}},
        )["Items"]
        time.sleep(0.2)
    assert any(i["rule"]["S"] == "fast-scraper" for i in items)
    stderr = running.stop()
    assert "incident record(s) written to dynamodb://serve-alerts" in stderr, stderr
