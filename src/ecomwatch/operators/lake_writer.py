"""The lake writer: buffers accepted events and commits them with each checkpoint."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ecomwatch.lake.base import CommitInfo, EventTable
from ecomwatch.schema import EVENT_SCHEMA


class LakeWriter:
    name = "lake"

    def __init__(self, table: EventTable) -> None:
        self.table = table
        self._pending: list[pa.Table] = []
        self.committed_rows = 0
        self.commits: list[CommitInfo] = []

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        if events.num_rows:
            self._pending.append(events)

    def load(self) -> dict[str, Any] | None:
        return self.table.last_checkpoint()

    def commit(self, checkpoint: dict[str, Any]) -> CommitInfo:
        """Write the buffered events and the checkpoint as one commit of the table."""
        events = (
            pa.concat_tables(self._pending, promote_options="permissive").cast(EVENT_SCHEMA)
            if self._pending
            else EVENT_SCHEMA.empty_table()
        )
        info = self.table.commit(events, checkpoint)
        self._pending = []
        self.committed_rows += info.rows
        self.commits.append(info)
        return info

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None
