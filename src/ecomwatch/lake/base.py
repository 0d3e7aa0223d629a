"""The lake table interface: commit events and a checkpoint atomically; list what is committed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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


Checkpoint = dict[str, Any] | Callable[[], dict[str, Any]]


def resolved(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint itself, from its function if it is one."""
    return checkpoint() if callable(checkpoint) else checkpoint


class EventTable(Protocol):
    """A table of events that commits data and the engine's checkpoint in one atomic step.

    A reader sees a commit entirely or not at all; after a crash the next writer removes what an
    unfinished commit left behind.
    """

    location: str

    def commit(self, events: pa.Table, checkpoint: Checkpoint) -> CommitInfo:
        """Commit the events with the checkpoint: a dict, or a function that gives it, called
        once the data files are written (the operator states it waits for come meanwhile)."""
        ...

    def last_checkpoint(self) -> dict[str, Any] | None: ...

    def data_files(self) -> list[str]:
        """Paths of the latest committed data files (local paths or s3:// URIs)."""
        ...

    def rollup_files(self) -> dict[str, list[str]] | None:
        """Committed rollup files by name; None when reports must read the raw events."""
        ...

    def commits(self) -> list[dict[str, Any]]: ...

    def total_bytes(self) -> int: ...

    def rollup_bytes(self) -> int: ...

    def local_aux_dir(self) -> Path | None:
        """A local folder inside the lake for ecomwatch's own files (None on object stores)."""
        ...

    def close(self) -> None: ...
