"""Keeping a long-lived Hudi table small: cleaning and archiving after commits.

A live service commits every two seconds, 43,200 commits a day. Each adds three timeline files,
a version of a data file and a file per rollup, and every commit, report and query lists them.
So, as Hudi's own writers do by default (automatic cleaning that retains 10 commits; archiving
between 20 and 30 active commits), once the active timeline holds more than `keep_max`
completed commits, the writer

1. cleans: deletes the file versions that no snapshot of the last `retain` commits reads;
2. archives the oldest commits down to `keep_min`, in this order:
   - their commit metadata is written to `.hoodie/.aux/ecomwatch/archived/<last>.json` (the
     table's history, read by `Timeline.history`);
   - their rollup files are merged into one file per rollup, and merged files in tiers
     (`_merge_rollups`), so that a rollup's files grow with the table's age by one every
     FANOUT ** TOP_LEVEL archivings (topping up one merged file at every archiving instead
     rewrote megabytes each time);
   - the files the previous archiving made redundant are deleted (a reader that listed them
     before has had a whole archiving interval to read them);
   - `archive.json` is replaced in one write: the newest archived instant (`until`), the merged
     rollup files that now stand for every archived commit, and the files this archiving made
     redundant;
   - their timeline files are deleted.

A crash at any step leaves a table that reads the same: the next archiving redoes or finishes
the work.

A base file of an archived instant counts as committed, as in Hudi, whose readers take every
instant before the start of the active timeline as completed. A reader lists the timeline first
and reads `archive.json` second: an instant archived in between is then within `until`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ecomwatch.lake.hudi_files import BaseFiles, latest_slices
from ecomwatch.lake.hudi_format import HOODIE_DIR
from ecomwatch.lake.hudi_timeline import ARCHIVED_DIR, AUX_DIR, Archive, Timeline
from ecomwatch.lake.parquet_table import write_parquet_batches
from ecomwatch.lake.rollups import ROLLUPS
from ecomwatch.lake.storage import Location

ROLLUP_DIR = f"{AUX_DIR}/rollups"
ROLLUPS_KEY = "ecomwatch.rollups"
FANOUT = 10  # merged rollup files of one level that are merged into one of the next
TOP_LEVEL = 2  # files of this level stay: one per FANOUT ** TOP_LEVEL archivings
# Files are not merged into one bigger than this: the merge runs on the commit thread (in
# `bench commits`, merging 52 MB of one rollup, 100 commits of 100,000 events, held a
# commit for up to 1.8 s).
MAX_MERGE_BYTES = 64 << 20


def commit_rollups(meta: dict[str, Any]) -> dict[str, str] | None:
    """A commit's rollup files by name ({} for a commit without rows), or None when the commit
    changed existing rows (reports must then read the raw events)."""
    extra = meta.get("extraMetadata") or {}
    written = json.loads(extra.get(ROLLUPS_KEY, "null"))
    if written is None:
        has_rows = any(meta.get("partitionToWriteStats", {}).values())
        return None if has_rows or ROLLUPS_KEY in extra else {}
    return {name: str(written[name]) for name in ROLLUPS}


def maintain(
    timeline: Timeline, files: BaseFiles, *, retain: int, keep_min: int, keep_max: int
) -> bool:
    """Clean and archive once more than `keep_max` commits are active; True if it did."""
    loc = timeline.loc
    archive = Archive.read(loc)
    instants = timeline.instants()
    pending = [i.time for i in instants if i.state != "completed"]
    active = archive.active([i.time for i in instants if i.state == "completed"])
    if len(active) <= keep_max:
        return False
    clean(timeline, files, retain_commits=retain)
    # Never past an unfinished instant: its files must stay uncommitted.
    chosen = [i for i in active[: len(active) - keep_min] if not pending or i < min(pending)]
    if not chosen:
        return False
    metadata = {instant: timeline.metadata(instant) for instant in chosen}
    loc.write_atomic(
        f"{ARCHIVED_DIR}/{chosen[-1]}.json", json.dumps({"commits": metadata}).encode()
    )
    rollups, redundant = _merge_rollups(loc, archive, metadata, chosen[-1])
    for path in archive.redundant:  # an archiving ago: no reader still reads them
        loc.delete(path)
    Archive(chosen[-1], rollups, redundant).write(loc)
    # With the instants a crash left behind after an earlier archive.json was written.
    done = [i.time for i in instants if archive.until is not None and i.time <= archive.until]
    for instant in [*done, *chosen]:
        for suffix in (".commit.requested", ".inflight", ".commit"):
            loc.delete(f"{HOODIE_DIR}/{instant}{suffix}")
    timeline.forget(chosen)
    return True


def clean(timeline: Timeline, files: BaseFiles, *, retain_commits: int) -> list[str]:
    """Delete file versions no snapshot of the last `retain_commits` commits reads; their paths."""
    bases = files.listed()  # listed once for every snapshot kept
    done, archive = timeline.active()
    if len(done) <= retain_commits:
        return []
    completed = set(done)
    oldest_kept = done[-retain_commits]
    keep: set[str] = set()
    for instant in done[-retain_commits:]:
        keep |= {b.path for b in latest_slices(bases, completed, archive, instant).values()}
    removed = []
    for base in bases:
        if (
            base.path not in keep
            and archive.committed(base.instant, completed)
            and base.instant < oldest_kept
        ):
            files.delete(base)
            removed.append(base.path)
    return removed


def _merge_rollups(
    loc: Location, archive: Archive, metadata: dict[str, dict[str, Any]], last: str
) -> tuple[dict[str, list[str]] | None, list[str]]:
    """The merged rollup files standing for every archived commit, and the files they replace.

    The archived commits' rollups make one file of level 0; FANOUT files of a level make one of
    the next (unless they hold over MAX_MERGE_BYTES), up to TOP_LEVEL: a rollup then has at most
    2 * (FANOUT - 1) files below the top level and one top-level file per FANOUT ** TOP_LEVEL
    archivings, and a row is rewritten at most TOP_LEVEL + 1 times.
    """
    per_commit = [commit_rollups(meta) for meta in metadata.values()]
    replaced = [path for files in per_commit if files for path in files.values()]
    if archive.rollups is None or any(files is None for files in per_commit):
        return None, replaced
    merged: dict[str, list[str]] = {}
    for name in ROLLUPS:
        kept = list(archive.rollups.get(name, []))
        sources = [files[name] for files in per_commit if files]
        level = 0
        while sources:
            target = f"{ROLLUP_DIR}/{name}/merged-L{level}-{last}.parquet"
            _merge_files(loc, sources, target)
            kept.append(target)
            if level == TOP_LEVEL:
                break
            level += 1
            sources = [p for p in kept if _level(p) == level - 1]
            if len(sources) < FANOUT or sum(map(loc.size, sources)) > MAX_MERGE_BYTES:
                break
            kept = [p for p in kept if p not in sources]
            replaced.extend(sources)
        merged[name] = kept
    return merged, replaced


def _level(path: str) -> int:
    """A merged rollup file's level, from its name `merged-L<level>-<instant>.parquet`."""
    return int(path.rsplit("/", 1)[-1].split("-")[1][1:])


def _merge_files(loc: Location, paths: list[str], target: str) -> None:
    """One Parquet file of the rows of `paths`, streamed a batch at a time."""
    schemas = []
    for path in paths:
        with loc.fs.open_input_file(loc.path(path)) as f:
            schemas.append(pq.read_schema(f))
    schema = pa.unify_schemas(schemas, promote_options="permissive")

    def batches() -> Iterator[pa.RecordBatch]:
        for path in paths:
            with loc.fs.open_input_file(loc.path(path)) as f:
                for batch in pq.ParquetFile(f).iter_batches():
                    yield batch.cast(schema)

    write_parquet_batches(batches(), schema, loc, target)
