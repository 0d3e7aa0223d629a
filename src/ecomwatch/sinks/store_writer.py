"""The state store written while the pipeline runs, from a background thread: the detector
hands each batch of new alerts to `send`, which returns at once.

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


class StoreWriter:
    def __init__(self, store: AlertStateStore, journal: Path) -> None:
        self.store = store
        self.journal = journal
        self.written = 0  # alert lines added to the store by this writer
        self.recovered = 0  # alert lines of a crashed run's journal written at opening
        self.drain_s = 0.0  # how long `close` waited for the store to catch up
        self._queue: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._sent = 0  # alert lines journaled
        self._error: Exception | None = None
        self._recover()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def _recover(self) -> None:
        if not self.journal.exists():
            return
        pending = read_json_lines(self.journal)
        if pending:
            self.store.add(pending)
        self.recovered = len(pending)
        self.journal.unlink()

    def send(self, alerts: list[dict[str, Any]]) -> None:
        """Journal the alerts and queue them for the store; returns at once."""
        if not alerts:
            return
        with self._lock:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with self.journal.open("a") as out:
                out.write("".join(json.dumps(a) + "\n" for a in alerts))
            self._sent += len(alerts)
        self._queue.put(alerts)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, done = list(first), False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                batch += more
            try:
                self.store.add(batch)
            except Exception as exc:  # a local store that cannot write: kept in the journal
                self._error = exc
                return
            self.written += len(batch)
            self._forget_written()
            if done:
                return

    def _forget_written(self) -> None:
        """Empty the journal when the store holds everything it lists."""
        with self._lock:
            if self.written == self._sent and self.journal.exists():
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
