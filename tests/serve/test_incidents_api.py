"""Incidents in the live service: listed and searched as the detector correlates alerts,
shown with their alerts, acknowledged and resolved through the API behind the token, and the
actions kept across a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.serve.conftest import start_server
from tests.serve.test_collector_api import fast_scraper
from tests.sinks.test_webhook import Receiver


def wait_for_incidents(server, query: str = "") -> dict:
    deadline = time.monotonic() + 30
    while True:
        status, page = server.get_json("/api/incidents" + query)
        assert status == 200
        if page["incidents"] or time.monotonic() > deadline:  # type: ignore[index]
            return page  # type: ignore[return-value]
        time.sleep(0.2)


def test_incidents_are_listed_searched_shown_and_acted_on(tmp_path: Path):
    lake = tmp_path / "lake"
    server = start_server(lake)
    try:
        assert server.post_events(fast_scraper("203.0.113.66"))[0] == 200
        assert server.post_events(fast_scraper("203.0.113.99"))[0] == 200
        page = wait_for_incidents(server, "?q=203.0.113.66")
        assert page["total"] == 1
        incident = page["incidents"][0]
        assert incident["kind"] == "scraper" and "203.0.113.66" in incident["ips"]
        assert incident["state"] == "open"
        listed = wait_for_incidents(server)
        assert listed["by_state"]["open"] >= 1
        assert server.get_json("/api/incidents?state=closed")[0] == 422
        assert server.get_json("/api/incidents?q=192.0.2.1")[1]["total"] == 0  # type: ignore[index]
        ident = incident["incident_id"]
        status, shown = server.get_json(f"/api/incidents/{ident}")
        assert status == 200 and shown["alert_lines"]  # type: ignore[index]
        assert all(a["entity"] == "203.0.113.66" for a in shown["alert_lines"])  # type: ignore[index]
        assert server.get_json("/api/incidents/0000")[0] == 404

        path = f"/api/incidents/{ident}/ack"
        assert server.request("POST", path, b"", token=None)[0] == 401
        status, _, body = server.request("POST", path, json.dumps({"by": "dana"}).encode())
        acked = json.loads(body)
        assert status == 200 and acked["state"] == "acknowledged"
        assert acked["acknowledged_by"] == "dana"
        assert server.request("POST", path, b"")[0] == 409  # already acknowledged
        assert server.request("POST", f"/api/incidents/{ident}/close", b"")[0] == 404
        assert server.get_json("/api/incidents?state=acknowledged")[1]["total"] == 1  # type: ignore[index]
    finally:
        server.stop()
    actions = list(lake.glob("**/alerts.incident-actions.jsonl"))
    assert len(actions) == 1 and json.loads(actions[0].read_text())["by"] == "dana"

    again = start_server(lake)  # the acknowledgement outlives the process
    try:
        status, shown = again.get_json(f"/api/incidents/{ident}")
        assert status == 200 and shown["state"] == "acknowledged"  # type: ignore[index]
        status, _, body = again.request("POST", f"/api/incidents/{ident}/resolve", b"")
        assert status == 200 and json.loads(body)["state"] == "resolved"
    finally:
        again.stop()


def test_serve_posts_one_slack_message_when_an_incident_opens(tmp_path: Path):
    """`serve --webhook URL` with `[webhook] format = "slack"`: a message per incident, with
    a link to its dashboard page, sent after the group wait in wall time (the traffic stops)."""
    receiver = Receiver(failures=0)
    settings = tmp_path / "ecomwatch.toml"
    settings.write_text('[webhook]\nformat = "slack"\ngroup_wait_s = 1\n')
    server = start_server(
        tmp_path / "lake", extra=("--webhook", receiver.url, "--config", str(settings))
    )
    try:
        assert server.post_events(fast_scraper("203.0.113.66"))[0] == 200
        deadline = time.monotonic() + 30
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.2)
        ident = wait_for_incidents(server)["incidents"][0]["incident_id"]
    finally:
        stderr = server.stop()
        receiver.stop()
    assert len(receiver.received) == 1, receiver.received  # 300 events, one message
    text = receiver.received[0]["text"]
    assert "*opened*: Scraper: 1 IP, 300 events" in text
    assert f"/#/incident/{ident}|{ident}>" in text
    assert "webhook: 1 incident message(s) delivered (opened 1)" in stderr
