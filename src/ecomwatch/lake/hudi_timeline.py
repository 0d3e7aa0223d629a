"""A Hudi table's timeline: the instants under `.hoodie/` and, past them, what archiving left.

An instant is `requested`, `inflight` or `completed` by the most advanced of its timeline files.
Archived instants (`hudi_archive`) leave the active timeline; `archive.json` says up to which
instant everything is archived (and was completed), and `archived/<last>.json` keeps their
commit metadata as the table's history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ecomwatch.lake.base import LakeError
from ecomwatch.lake.hudi_format import HOODIE_DIR, parse_timeline_name
from ecomwatch.lake.storage import Location

AUX_DIR = f"{HOODIE_DIR}/.aux/ecomwatch"
ARCHIVE_FILE = f"{AUX_DIR}/archive.json"
ARCHIVED_DIR = f"{AUX_DIR}/archived"
_STATE_ORDER = {"requested": 0, "inflight": 1, "completed": 2}


@dataclass(frozen=True)
class Instant:
    time: str
    state: str  # requested, inflight, completed


@dataclass(frozen=True)
class Archive:
    """What `archive.json` says; the empty archive before the first archiving."""

    until: str | None = None  # every instant up to this one is archived (and was completed)
    # Merged rollup files (relative paths) for every archived commit; None when some archived
    # commit changed existing rows, so that reports must read the raw events.
    rollups: dict[str, list[str]] | None = field(default_factory=dict)
    redundant: list[str] = field(default_factory=list)  # deleted by the next archiving

    @classmethod
    def read(cls, loc: Location) -> Archive:
        if not loc.exists(ARCHIVE_FILE):
            return cls()
        data = json.loads(loc.read_bytes(ARCHIVE_FILE))
        return cls(data["until"], data["rollups"], list(data["redundant"]))

    def write(self, loc: Location) -> None:
        record = {"until": self.until, "rollups": self.rollups, "redundant": self.redundant}
        loc.write_atomic(ARCHIVE_FILE, json.dumps(record).encode())

    def committed(self, instant: str, completed: set[str]) -> bool:
        return instant in completed or (self.until is not None and instant <= self.until)

    def active(self, completed: list[str]) -> list[str]:
        """The completed instants the archive does not stand for."""
        return [i for i in completed if self.until is None or i > self.until]


class Timeline:
    """The instants of the table at `loc`, with each completed commit's metadata read once."""

    def __init__(self, loc: Location, location: str) -> None:
        self.loc = loc
        self.location = location  # for messages
        self._metadata: dict[str, dict[str, Any]] = {}

    def instants(self) -> list[Instant]:
        """Every instant of the active timeline with its most advanced state, oldest first."""
        states: dict[str, str] = {}
        for name in self.loc.list_files(HOODIE_DIR):
            parsed = parse_timeline_name(name.rsplit("/", 1)[-1])
            if parsed is None:
                continue
            time, state = parsed
            if time not in states or _STATE_ORDER[state] > _STATE_ORDER[states[time]]:
                states[time] = state
        return [Instant(t, states[t]) for t in sorted(states)]

    def completed(self) -> list[str]:
        """The completed instants of the active timeline (archived ones are not listed)."""
        return [i.time for i in self.instants() if i.state == "completed"]

    def active(self) -> tuple[list[str], Archive]:
        """The completed instants beyond the archive, and the archive (read second: an instant
        archived after the listing is then within it)."""
        completed = self.completed()
        archive = Archive.read(self.loc)
        return archive.active(completed), archive

    def metadata(self, instant: str) -> dict[str, Any]:
        """A completed commit's metadata (`<instant>.commit`)."""
        if instant not in self._metadata:
            try:
                data = json.loads(self.loc.read_bytes(f"{HOODIE_DIR}/{instant}.commit"))
            except (OSError, ValueError) as exc:
                raise LakeError(
                    f"{self.location}: the timeline file {HOODIE_DIR}/{instant}.commit is "
                    f"missing or corrupt ({exc}); the table needs repair (nothing was deleted)"
                ) from exc
            self._metadata[instant] = data
        return self._metadata[instant]

    def forget(self, instants: list[str]) -> None:
        """Drop archived instants' metadata from memory (a service runs for weeks)."""
        for instant in instants:
            self._metadata.pop(instant, None)

    def history(self) -> dict[str, dict[str, Any]]:
        """The metadata of every commit, archived and active, by instant."""
        found: dict[str, dict[str, Any]] = {}
        for path in self.loc.list_files(ARCHIVED_DIR):
            if path.endswith(".json"):
                found.update(json.loads(self.loc.read_bytes(path))["commits"])
        completed, _ = self.active()
        return {**dict(sorted(found.items())), **{i: self.metadata(i) for i in completed}}
