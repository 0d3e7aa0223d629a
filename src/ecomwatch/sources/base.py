"""The source protocol: read decoded batches from a position, report the position after each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ecomwatch.decode.validate import Decoded


class SourceError(Exception):
    """A source could not be read (or stopped being readable). The message names it."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


@dataclass(frozen=True)
class Position:
    """Where a source resumes: an offset in its (decompressed) stream and the next line; a
    source of many parts (a stream's shards) keeps each part's place in `cursor`, a JSON
    object of its own design."""

    offset: int = 0
    line: int = 1
    done: bool = False
    cursor: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.cursor is None:
            del data["cursor"]  # file checkpoints stay as they were
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Position:
        return cls(int(data["offset"]), int(data["line"]), bool(data["done"]), data.get("cursor"))


@dataclass(frozen=True)
class SourceBatch:
    decoded: Decoded
    position: Position  # resume here to continue after this batch
    progress: int  # bytes of the underlying file consumed so far
    # A source of many parts read side by side (a stream's shards): the watermark may not pass
    # this event time (µs), the latest of the part furthest behind; 0 holds it where it is (a
    # part with more to read has given nothing yet). None: no bound.
    event_time_bound_us: int | None = None


class Source(Protocol):
    name: str  # for people: a path or stream name
    source_id: str  # for identity: a content fingerprint or a shard id
    size: int  # bytes, for progress; 0 when unknown

    def read(self, start: Position) -> Iterator[SourceBatch]:
        """Yield batches from `start`; raise SourceError after the last good batch on a fault."""
        ...
