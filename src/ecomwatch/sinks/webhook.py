"""Items POSTed as JSON to a webhook, from a background thread: the pipeline never waits.

Items (alerts, or incident messages) are queued (bounded) and sent in small batches as a JSON
array, or one per POST as the body itself (`one_per_post`: what Slack's incoming webhooks and
most receivers of notifications take). A failed POST (a connection error or any status other
than 2xx) is retried with exponential backoff; an item that still cannot be delivered, or that
finds the queue full, is appended to the failures file with the reason (as
`{"reason": …, "<kind>": item}`), so nothing is lost and a script can resend it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_BATCH = 100
QUEUE_LIMIT = 10_000


class WebhookSink:
    def __init__(
        self,
        url: str,
        failures: Path,
        *,
        attempts: int = 5,
        first_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        one_per_post: bool = False,
        kind: str = "alert",
    ) -> None:
        self.url = url
        self.failures = failures
        self.attempts = attempts
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.sleep = sleep
        self.max_batch = 1 if one_per_post else MAX_BATCH
        self.one_per_post = one_per_post
        self.kind = kind
        self.delivered = 0
        self.failed = 0
        self.retries = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def send(self, items: list[dict[str, Any]]) -> None:
        """Queue items; returns at once. A full queue sends the overflow to the failures file."""
        for item in items:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._keep([item], "queue full")

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued (up to `timeout_s`), keep the rest in the failures file."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        leftover = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                leftover.append(item)
        if leftover:
            self._keep(leftover, "not delivered before shutdown")

    def _run(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                batch.append(item)
            self._deliver(batch)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        body = json.dumps(batch[0] if self.one_per_post else batch).encode()
        backoff = self.first_backoff_s
        reason = ""
        for attempt in range(self.attempts):
            if attempt:
                self.retries += 1
                self.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            request = urllib.request.Request(self.url, data=body, headers=self.headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        self.delivered += len(batch)
                        return
                    reason = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = str(getattr(exc, "reason", exc))
        self._keep(batch, f"{reason} after {self.attempts} attempts")

    def _keep(self, items: list[dict[str, Any]], reason: str) -> None:
        with self._lock:
            self.failed += len(items)
            self.failures.parent.mkdir(parents=True, exist_ok=True)
            with self.failures.open("a") as f:
                for item in items:
                    f.write(json.dumps({"reason": reason, self.kind: item}) + "\n")
