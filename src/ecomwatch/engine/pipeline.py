"""The micro-batch engine: sources → watermark → operators → checkpoint.

Each decoded batch goes through the watermark (late events are counted) and every operator.
Every `checkpoint_rows` accepted rows, and at the end, the engine commits one checkpoint: the lake
writer's buffered events, every operator's state, each source's position and counters, and the
dead-letter file's length, in one atomic commit of the committer (the lake table). A run started
again with the same inputs resumes from that checkpoint: files already done are skipped, a file
half done continues at its position, so nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from ecomwatch.engine.operator import Operator, Transform
from ecomwatch.engine.watermark import Watermark
from ecomwatch.lake.base import LakeError
from ecomwatch.sinks.jsonl import JsonLinesFile
from ecomwatch.sources.base import Position, Source, SourceError

if TYPE_CHECKING:
    from ecomwatch.decode.validate import Decoded

CHECKPOINT_VERSION = 1


class Committer(Protocol):
    """Persists a checkpoint atomically (with whatever data it buffered) and loads the last one."""

    def load(self) -> dict[str, Any] | None: ...

    def commit(self, checkpoint: dict[str, Any]) -> Any: ...

    def flush(self) -> None:
        """Wait until every commit made so far is durable."""
        ...


class SourceStatus(StrEnum):
    INGESTED = "ingested"
    ALREADY_INGESTED = "already ingested"
    FAILED = "failed"


@dataclass
class SourceStats:
    """What this run did with one source."""

    name: str
    source_id: str
    status: SourceStatus = SourceStatus.INGESTED
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    late: int = 0
    repaired: dict[str, int] = field(default_factory=dict)
    resumed_from_line: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source_id": self.source_id,
            "status": self.status.value,
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "late": self.late,
            "repaired": self.repaired,
            "resumed_from_line": self.resumed_from_line,
            "error": self.error,
        }


@dataclass
class RunSummary:
    sources: list[SourceStats]
    seconds: float
    checkpoints: int
    dead_letter: str | None
    watermark_us: int | None

    @property
    def read(self) -> int:
        return sum(s.read for s in self.sources)

    @property
    def accepted(self) -> int:
        return sum(s.accepted for s in self.sources)

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.sources)

    @property
    def late(self) -> int:
        return sum(s.late for s in self.sources)

    @property
    def failed(self) -> list[SourceStats]:
        return [s for s in self.sources if s.status is SourceStatus.FAILED]

    @property
    def events_per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "files": len(self.sources),
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "late": self.late,
            "failed": len(self.failed),
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "checkpoints": self.checkpoints,
            "dead_letter": self.dead_letter,
            "sources": [s.to_json() for s in self.sources],
        }


class Pipeline:
    def __init__(
        self,
        *,
        committer: Committer,
        operators: Sequence[Operator],
        watermark: Watermark,
        dead_letter: JsonLinesFile | None = None,
        checkpoint_rows: int = 2_000_000,
        checkpoint_seconds: float | None = None,
        on_batch: Callable[[Decoded], None] | None = None,
        transforms: Sequence[Transform] = (),
    ) -> None:
        self.committer = committer
        self.transforms = list(transforms)  # applied to each batch's events, in order
        self.on_batch = on_batch  # told of every batch, rejected rows too (metrics)
        # A live source also checkpoints on a clock: data is committed within this many seconds.
        self.checkpoint_seconds = checkpoint_seconds
        self._last_checkpoint = time.monotonic()
        self.operators = list(operators)
        self.watermark = watermark
        self.dead_letter = dead_letter
        self.checkpoint_rows = checkpoint_rows
        self._state: dict[str, Any] = {"version": CHECKPOINT_VERSION, "sources": {}}
        self._checkpoints = 0
        self._since_checkpoint = 0
        self._dirty = False

    def run(
        self,
        sources: Sequence[Source],
        *,
        open_errors: Sequence[SourceError] = (),
        on_progress: Callable[[str, int], None] | None = None,
    ) -> RunSummary:
        """Process every source in order; a failing source is reported and the rest go on."""
        started = time.perf_counter()
        self._restore()
        stats: list[SourceStats] = [
            SourceStats(e.source, "", SourceStatus.FAILED, error=e.message) for e in open_errors
        ]
        for source in sources:
            stats.append(self._run_source(source, on_progress))
        if self._dirty:
            self._checkpoint()
        self.committer.flush()
        return RunSummary(
            sources=stats,
            seconds=time.perf_counter() - started,
            checkpoints=self._checkpoints,
            dead_letter=str(self.dead_letter.path) if self.dead_letter else None,
            watermark_us=self.watermark.current(),
        )

    def _run_source(
        self, source: Source, on_progress: Callable[[str, int], None] | None
    ) -> SourceStats:
        stat = SourceStats(source.name, source.source_id)
        entry = self._state["sources"].get(source.source_id)
        if entry is None:
            entry = {
                "name": source.name,
                "position": Position().to_json(),
                "read": 0,
                "accepted": 0,
                "rejected": 0,
                "late": 0,
                "repaired": {},
            }
            self._state["sources"][source.source_id] = entry
        start = Position.from_json(entry["position"])
        if start.done:
            stat.status = SourceStatus.ALREADY_INGESTED
            if on_progress:
                on_progress(source.name, source.size)
            return stat
        if start.offset:
            stat.resumed_from_line = start.line
        try:
            for batch in source.read(start):
                decoded = batch.decoded
                if self.transforms and decoded.events.num_rows:
                    events = decoded.events
                    for transform in self.transforms:
                        events = transform.apply(events)
                    decoded = replace(decoded, events=events)
                late = self.watermark.observe(
                    decoded.events["event_time"], bound_us=batch.event_time_bound_us
                )
                watermark = self.watermark.current()
                for operator in self.operators:
                    operator.process(decoded.events, watermark)
                if self.dead_letter is not None:
                    self.dead_letter.write(decoded.rejects)
                counts = {
                    "read": decoded.read,
                    "accepted": decoded.events.num_rows,
                    "rejected": decoded.rejects.num_rows,
                    "late": late,
                }
                for key, value in counts.items():
                    entry[key] += value
                    setattr(stat, key, getattr(stat, key) + value)
                for kind, value in decoded.repaired.items():
                    entry["repaired"][kind] = entry["repaired"].get(kind, 0) + value
                    stat.repaired[kind] = stat.repaired.get(kind, 0) + value
                moved = batch.position.to_json() != entry["position"]
                entry["position"] = batch.position.to_json()
                self._since_checkpoint += decoded.events.num_rows
                # An idle tick of a live source (nothing read, nowhere moved) changes nothing.
                self._dirty = self._dirty or moved or decoded.read > 0
                if self.on_batch is not None:
                    self.on_batch(decoded)
                if on_progress:
                    on_progress(source.name, batch.progress)
                if self._since_checkpoint >= self.checkpoint_rows or self._clock_says_commit():
                    self._checkpoint()
        except SourceError as exc:
            stat.status = SourceStatus.FAILED
            stat.error = exc.message
        return stat

    def _restore(self) -> None:
        state = self.committer.load()
        if state is None:
            return
        if state.get("version") != CHECKPOINT_VERSION:
            raise LakeError(
                f"the lake's checkpoint has version {state.get('version')}, this ecomwatch "
                f"reads version {CHECKPOINT_VERSION}; use a new lake or a matching ecomwatch"
            )
        self._state = state
        self.watermark.restore(state.get("watermark", {}))
        saved = state.get("operators", {})
        for transform in self.transforms:
            transform.restore(saved.get(transform.name, {}))
        for operator in self.operators:
            operator.restore(saved.get(operator.name, {}))
        recorded = state.get("dead_letter") or {}
        if self.dead_letter is not None and recorded.get("path") == str(self.dead_letter.path):
            self.dead_letter.resume_at(int(recorded["bytes"]))

    def _clock_says_commit(self) -> bool:
        return (
            self.checkpoint_seconds is not None
            and self._dirty
            and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        )

    def _checkpoint(self) -> None:
        if self.dead_letter is not None:
            self._state["dead_letter"] = {
                "path": str(self.dead_letter.path),
                "bytes": self.dead_letter.flush(),
            }
        self._state["watermark"] = self.watermark.snapshot()
        self._state["operators"] = {
            **{t.name: t.snapshot() for t in self.transforms},
            **{op.name: op.snapshot() for op in self.operators},
        }
        self.committer.commit(self._state)
        self._checkpoints += 1
        self._since_checkpoint = 0
        self._dirty = False
        self._last_checkpoint = time.monotonic()


def total_rejected(checkpoint: dict[str, Any] | None) -> int:
    """Rows rejected at ingest over every source the checkpoint knows."""
    if not checkpoint:
        return 0
    return sum(int(s.get("rejected", 0)) for s in checkpoint.get("sources", {}).values())
