"""The webhook sink against a real HTTP server on loopback that fails, then recovers."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ecomwatch.sinks.webhook import WebhookSink


class Receiver:
    """A server answering 503 to the first `failures` POSTs, then 200; records what arrives."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.failures:
                    self.send_response(503)
                    self.end_headers()
                    return
                sent = json.loads(body)  # an array of alerts, or one message
                receiver.received.extend(sent if isinstance(sent, list) else [sent])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alerts(n: int) -> list[dict]:
    return [{"alert_id": f"a{i}", "rule": "fast-scraper", "severity": "high"} for i in range(n)]


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(failures: int) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def test_failures_are_retried_with_backoff_until_the_server_recovers(receiver, tmp_path: Path):
    server = receiver(failures=3)
    waits: list[float] = []
    sink = WebhookSink(server.url, tmp_path / "failed.jsonl", sleep=waits.append)
    started = time.perf_counter()
    sink.send(alerts(5))
    assert time.perf_counter() - started < 0.05  # sending never waits for the network
    sink.close()
    assert [a["alert_id"] for a in server.received] == [f"a{i}" for i in range(5)]
    assert waits == [0.5, 1.0, 2.0]  # three failures, exponential backoff
    assert sink.delivered == 5 and sink.failed == 0
    assert not (tmp_path / "failed.jsonl").exists()


def test_undeliverable_alerts_are_kept_with_the_reason(receiver, tmp_path: Path):
    server = receiver(failures=10**6)
    sink = WebhookSink(server.url, tmp_path / "failed.jsonl", attempts=3, sleep=lambda s: None)
    sink.send(alerts(2))
    sink.close()
    kept = [json.loads(line) for line in (tmp_path / "failed.jsonl").read_text().splitlines()]
    assert [k["alert"]["alert_id"] for k in kept] == ["a0", "a1"]
    assert kept[0]["reason"] == "HTTP 503 after 3 attempts"
    assert server.attempts == 3 and sink.failed == 2


def test_a_server_that_is_down_loses_nothing(tmp_path: Path):
    server = Receiver(0)
    url = server.url
    server.stop()  # nothing listens on the port any more
    sink = WebhookSink(url, tmp_path / "failed.jsonl", attempts=2, sleep=lambda s: None)
    sink.send(alerts(3))
    sink.close()
    lines = (tmp_path / "failed.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "after 2 attempts" in json.loads(lines[0])["reason"]


def test_one_item_per_post_sends_the_item_itself(receiver, tmp_path: Path):
    server = receiver(failures=0)
    sink = WebhookSink(server.url, tmp_path / "failed.jsonl", one_per_post=True, kind="message")
    sink.send([{"text": "first"}, {"text": "second"}])
    sink.close()
    assert server.received == [{"text": "first"}, {"text": "second"}]
    assert server.attempts == 2 and sink.delivered == 2
