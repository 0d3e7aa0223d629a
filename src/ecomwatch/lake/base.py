"""The lake table interface: commit events and a checkpoint atomically; list what is committed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa


class LakeError(Exception):
    """The table cannot be opened or written; the message says why and what to do."""


@dataclass(frozen=True)
class CommitInfo:
    commit: int
    rows: int
    files: int
    bytes: int


class EventTable(Protocol):
    """A table of events that commits data and the engine's checkpoint in one atomic step.

    A reader sees a commit entirely or not at all; after a crash the next writer removes what an
    unfinished commit left behind.
    """

    location: str

    def commit(self, events: pa.Table, checkpoint: dict[str, Any]) -> CommitInfo: ...

    def last_checkpoint(self) -> dict[str, Any] | None: ...

    def data_files(self) -> list[str]:
        """Paths of the committed data files, for DuckDB's read_parquet."""
        ...

    def close(self) -> None: ...
