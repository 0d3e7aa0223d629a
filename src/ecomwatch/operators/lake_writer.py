"""The lake writer: buffers accepted events and commits them with each checkpoint.

Commits run on one background thread, so that decoding goes on while a checkpoint's files are
written (an asynchronous snapshot); that thread also waits for operator states that come later
(`engine.operator.settle`). Commits stay in order (one thread); at most `in_flight` are handed
over and not collected, and `flush()` waits for them all. A failed commit is raised at the next
call.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.engine.operator import State, settle, unsettled
from ecomwatch.lake.base import CommitInfo, EventTable
from ecomwatch.schema import EVENT_SCHEMA, as_events


def event_days(events: pa.Table) -> set[str]:
    """The UTC days of the events, as `YYYY-MM-DD` (one vectorized pass)."""
    if events.num_rows == 0:
        return set()
    days = pc.unique(pc.strftime(events["event_time"], format="%Y-%m-%d", locale="C"))
    return set(days.to_pylist())


class LakeWriter:
    name = "lake"

    def __init__(
        self,
        table: EventTable,
        *,
        background: bool = True,
        in_flight: int = 2,
        on_days: Callable[[set[str]], None] | None = None,
    ) -> None:
        self.table = table
        # Told the UTC days (2019-11-01) each commit wrote, once it is durable (Glue sync).
        self.on_days = on_days
        self.commit_seconds: deque[float] = deque(maxlen=10_000)  # for metrics to drain
        self.last_commit_at = time.time()  # wall clock of the last durable commit (or start)
        self._pending: list[pa.Table] = []
        self.committed_rows = 0
        self.commits: list[CommitInfo] = []  # collected by the pipeline's thread
        self.durable_commits = 0  # counted as each becomes durable (the live figures)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="commit") if background else None
        # Commits handed to the thread and not collected yet: one may wait behind the one being
        # written (whose operator state may still be coming), so the pipeline rarely waits.
        self.in_flight = in_flight
        self._inflight: deque[Future[CommitInfo]] = deque()

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        if events.num_rows:
            self._pending.append(events)

    def load(self) -> dict[str, Any] | None:
        return self.table.last_checkpoint()

    def commit(self, checkpoint: dict[str, Any]) -> None:
        """Commit the buffered events with the checkpoint, as one commit of the table."""
        events = (
            as_events(pa.concat_tables(self._pending))
            if self._pending
            else EVENT_SCHEMA.empty_table()
        )
        self._pending = []
        days = event_days(events) if self.on_days is not None else set()
        ready, later = unsettled(checkpoint)
        state = copy.deepcopy(ready)  # the engine goes on changing its copy
        if self._pool is None:
            self._done(self._commit(events, state, later, days))
            return
        inflight = self._inflight
        while inflight and (inflight[0].done() or len(inflight) >= self.in_flight):
            self._done(inflight.popleft().result())
        self._inflight.append(self._pool.submit(self._commit, events, state, later, days))

    def _commit(
        self,
        events: pa.Table,
        state: dict[str, Any],
        later: dict[str, Future[State]],
        days: set[str],
    ) -> CommitInfo:
        # An operator in another process or thread (the detector) answers its snapshot here,
        # not on the pipeline's thread: the table writes the data files first, then waits.
        started = time.monotonic()
        info = self.table.commit(events, lambda: settle(state, later))
        self.commit_seconds.append(time.monotonic() - started)
        self.last_commit_at = time.time()
        self.durable_commits += 1  # one commit thread: no other writer
        if days and self.on_days is not None:
            self.on_days(days)
        return info

    def flush(self) -> None:
        """Wait for the commits in flight, if any; raise the first error."""
        while self._inflight:
            self._done(self._inflight.popleft().result())

    def _done(self, info: CommitInfo) -> None:
        self.committed_rows += info.rows
        self.commits.append(info)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None
