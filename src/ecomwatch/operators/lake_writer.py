"""The lake writer: buffers accepted events and commits them with each checkpoint.

Commits run on one background thread, so that decoding goes on while a checkpoint's files are
written (an asynchronous snapshot). Commits stay in order: a new one first waits for the previous
one, and `flush()` waits for the last. A failed commit is raised at the next call.
"""

from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from ecomwatch.lake.base import CommitInfo, EventTable
from ecomwatch.schema import EVENT_SCHEMA


class LakeWriter:
    name = "lake"

    def __init__(self, table: EventTable, *, background: bool = True) -> None:
        self.table = table
        self._pending: list[pa.Table] = []
        self.committed_rows = 0
        self.commits: list[CommitInfo] = []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="commit") if background else None
        self._inflight: Future[CommitInfo] | None = None

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        if events.num_rows:
            self._pending.append(events)

    def load(self) -> dict[str, Any] | None:
        return self.table.last_checkpoint()

    def commit(self, checkpoint: dict[str, Any]) -> None:
        """Commit the buffered events with the checkpoint, as one commit of the table."""
        events = (
            pa.concat_tables(self._pending).cast(EVENT_SCHEMA)
            if self._pending
            else EVENT_SCHEMA.empty_table()
        )
        self._pending = []
        state = copy.deepcopy(checkpoint)  # the engine goes on changing its copy
        self.flush()
        if self._pool is None:
            self._done(self.table.commit(events, state))
        else:
            self._inflight = self._pool.submit(self.table.commit, events, state)

    def flush(self) -> None:
        """Wait for the commit in flight, if any; raise its error."""
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            self._done(inflight.result())

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
