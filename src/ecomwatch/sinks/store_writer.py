"""The state store written while the pipeline runs, from a background thread: the detector
hands each batch of new alerts to `send`, and of changed incident records to
`send_incidents`; both return at once.

Nothing in flight is lost to a crash: `send` first appends the alerts to a journal file beside
the store (a local append, cheap), and the journal is emptied only once the store holds every
alert it lists. A journal left by a crashed run is written to the store when it is next
opened, before anything new (store writes are idempotent, so an alert written twice changes
nothing). What a remote store cannot write after its retries goes to its failures file, as
with any write of that store.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

from ecomwatch.sinks.jsonl import read_json_lines
from ecomwatch.sinks.stores import AlertStateStore

MAX_BATCH = 5_000  # alerts handed to one `add` (coalesced: an escalation replaces its original)
ALERTS, INCIDENTS = "alerts", "incidents"


class StoreWriter:
    def __init__(self, store: AlertStateStore, journal: Path) -> None:
        self.store = store
        self.journal = journal
        self.written = 0  # alert lines added to the store by this writer
        self.incidents_written = 0  # incident records added
        self.recovered = 0  # alert lines of a crashed run's journal written at opening
        self.drain_s = 0.0  # how long `close` waited for the store to catch up
        self._queue: queue.Queue[tuple[str, list[dict[str, Any]]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._sent = 0  # lines journaled (alerts and incident records)
        self._error: Exception | None = None
        self._recover()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def _recover(self) -> None:
        if not self.journal.exists():
            return
        pending = read_json_lines(self.journal)
        alerts = [line for line in pending if "incident" not in line]
        if alerts:
            self.store.add(alerts)
        incidents = [line["incident"] for line in pending if "incident" in line]
        if incidents:
            self.store.add_incidents(incidents)
        self.recovered = len(pending)
        self.journal.unlink()

    def send(self, alerts: list[dict[str, Any]]) -> None:
        """Journal the alerts and queue them for the store; returns at once."""
        self._send(ALERTS, alerts, alerts)

    def send_incidents(self, records: list[dict[str, Any]]) -> None:
        """Journal the incident records and queue them for the store; returns at once."""
        self._send(INCIDENTS, records, [{"incident": r} for r in records])

    def _send(self, kind: str, items: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
        if not items:
            return
        with self._lock:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with self.journal.open("a") as out:
                out.write("".join(json.dumps(line) + "\n" for line in lines))
            self._sent += len(lines)
        self._queue.put((kind, items))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batches: dict[str, list[dict[str, Any]]] = {ALERTS: [], INCIDENTS: []}
            batches[first[0]] += first[1]
            done = False
            while len(batches[ALERTS]) + len(batches[INCIDENTS]) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                batches[more[0]] += more[1]
            try:
                if batches[ALERTS]:
                    self.store.add(batches[ALERTS])
                if batches[INCIDENTS]:
                    self.store.add_incidents(batches[INCIDENTS])
            except Exception as exc:  # a local store that cannot write: kept in the journal
                self._error = exc
                return
            self.written += len(batches[ALERTS])
            self.incidents_written += len(batches[INCIDENTS])
            self._forget_written()
            if done:
                return

    def _forget_written(self) -> None:
        """Empty the journal when the store holds everything it lists."""
        with self._lock:
            stored = self.written + self.incidents_written
            if stored == self._sent and self.journal.exists():
                self.journal.unlink()

    def close(self) -> None:
        """Wait until the store holds every alert sent (a remote store's failures are in its
        failures file by then), then close the store. A store that could not write at all
        leaves its journal, written at the next opening, and raises here."""
        started = time.perf_counter()
        self._queue.put(None)
        self._thread.join()
        self.drain_s = time.perf_counter() - started
        self.store.close()
        if self._error is not None:
            raise self._error
