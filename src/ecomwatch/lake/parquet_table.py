"""A Hive-partitioned Parquet table with a commit log (the embedded lake of this release).

Layout::

    DIR/event_date=2019-11-01/part-00000003-0000.parquet  data, ZSTD, partitioned by UTC date
    DIR/_ecomwatch/commits/00000003.json                   a commit: its files, its checkpoint's
    DIR/_ecomwatch/checkpoints/00000003.json               the engine's checkpoint (latest only)
    DIR/_ecomwatch/rollups/item/part-00000003.parquet      the commit's rollups (lake/rollups.py)
    DIR/_ecomwatch/lock                                    held by the one writer

Commit protocol: data files are written as `*.parquet.inprogress`, fsynced and renamed to
`*.parquet`, the checkpoint likewise; then the commit record is written to a temporary name,
fsynced and renamed. The record is the commit point. A writer that opens the table deletes data
files and checkpoints whose commit number has no record (left by a crash), so a reader going
through `data_files()` never sees a partial commit, and a plain glob over
`event_date=*/*.parquet` sees one only until the next writer opens.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ecomwatch.lake.base import Checkpoint, CommitInfo, LakeError, resolved
from ecomwatch.lake.rollups import ROLLUPS, compute_rollups
from ecomwatch.lake.storage import Location, fsync_dir

META_DIR = "_ecomwatch"
PARTITION = "event_date"
ROW_GROUP_ROWS = 512 * 1024
ROLLUP_DIR = "rollups"
_PART = re.compile(r"part-(\d{8})(?:-\d{4})?\.parquet(\.inprogress)?$")


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class ParquetTable:
    """Open for reading with `ParquetTable(dir)`; `ParquetTable(dir, writer=True)` also locks."""

    def __init__(self, root: Path | str, *, writer: bool = False, rollups: bool = True) -> None:
        self.root = Path(root)
        self.rollups = rollups
        self.location = str(self.root)
        self._commits_dir = self.root / META_DIR / "commits"
        self._checkpoints_dir = self.root / META_DIR / "checkpoints"
        self._lock_file: Any = None
        if writer:
            self._commits_dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            self._recover()
        elif not self._commits_dir.is_dir():
            raise LakeError(
                f"{self.root} is not an ecomwatch lake (no {META_DIR}/commits); "
                "create one with `ecomwatch run INPUT --lake DIR`"
            )

    # writing ------------------------------------------------------------------------------

    def _lock(self) -> None:
        self._lock_file = (self.root / META_DIR / "lock").open("a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise LakeError(
                f"another writer holds {self.root}; wait for it to finish or stop it"
            ) from None

    def _recover(self) -> None:
        """Delete what a crashed commit left: in-progress files and files of unrecorded commits."""
        committed = {int(p.stem) for p in self._commits_dir.glob("*.json")}
        leftovers = [
            *self.root.glob(f"{PARTITION}=*/part-*"),
            *self.root.glob(f"{META_DIR}/{ROLLUP_DIR}/*/part-*"),
        ]
        for path in leftovers:
            match = _PART.search(path.name)
            if match and (match.group(2) or int(match.group(1)) not in committed):
                path.unlink()
        for tmp in self._commits_dir.glob(".*.tmp"):
            tmp.unlink()
        for path in self._checkpoints_dir.glob("*.json*"):
            if path.name.startswith(".") or int(path.stem) not in committed:
                path.unlink()

    def commit(self, events: pa.Table, checkpoint: Checkpoint) -> CommitInfo:
        if self._lock_file is None:
            raise LakeError("the table was opened read-only")
        number = self._next_commit()
        files: list[dict[str, Any]] = []
        for partition, part in _split_by_date(events):
            directory = self.root / f"{PARTITION}={partition}"
            directory.mkdir(parents=True, exist_ok=True)
            final = directory / f"part-{number:08d}-{len(files):04d}.parquet"
            files.append({**self._publish(part, final), "partition": partition})
        rollups = {}
        if self.rollups and events.num_rows:
            for name, table in compute_rollups(events).items():
                directory = self.root / META_DIR / ROLLUP_DIR / name
                directory.mkdir(parents=True, exist_ok=True)
                rollups[name] = self._publish(table, directory / f"part-{number:08d}.parquet")
        for directory in {self.root / Path(f["path"]).parent for f in [*files, *rollups.values()]}:
            fsync_dir(directory)
        # The checkpoint (megabytes of operator state) goes beside the record, which names it.
        self._checkpoints_dir.mkdir(exist_ok=True)
        state = self._checkpoints_dir / f"{number:08d}.json"
        write_atomic(state, json.dumps(resolved(checkpoint)).encode())
        record = {
            "commit": number,
            "committed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "rows": events.num_rows,
            "files": files,
            "rollups": rollups,
            "checkpoint_file": str(state.relative_to(self.root)),
        }
        write_atomic(self._commits_dir / f"{number:08d}.json", json.dumps(record).encode())
        for older in self._checkpoints_dir.glob("*.json"):  # only the latest is read back
            if int(older.stem) < number:
                older.unlink()
        return CommitInfo(number, events.num_rows, len(files), sum(f["bytes"] for f in files))

    def _publish(self, table: pa.Table, final: Path) -> dict[str, Any]:
        """Write a file under a temporary name, then rename it into place."""
        staging = final.with_name(final.name + ".inprogress")
        _write_parquet(table, staging)
        os.replace(staging, final)
        return {
            "path": str(final.relative_to(self.root)),
            "rows": table.num_rows,
            "bytes": final.stat().st_size,
        }

    def _next_commit(self) -> int:
        numbers = [int(p.stem) for p in self._commits_dir.glob("*.json")]
        return max(numbers, default=0) + 1

    def local_aux_dir(self) -> Path | None:
        return self.root / META_DIR

    def close(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # reading ------------------------------------------------------------------------------

    def commits(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted(self._commits_dir.glob("*.json")):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                raise LakeError(
                    f"commit record {path} is unreadable ({exc}); the table needs repair"
                ) from exc
        return records

    def last_checkpoint(self) -> dict[str, Any] | None:
        # A writer deletes a checkpoint once a newer one is committed: a reader that lost that
        # race finds the newer record on its next look.
        for _ in range(3):
            paths = sorted(self._commits_dir.glob("*.json"))
            if not paths:
                return None
            try:
                record = json.loads(paths[-1].read_text())
                if "checkpoint_file" not in record:  # written inline by earlier versions
                    inline: dict[str, Any] = record["checkpoint"]
                    return inline
                checkpoint: dict[str, Any] = json.loads(
                    (self.root / record["checkpoint_file"]).read_text()
                )
            except FileNotFoundError as exc:
                if sorted(self._commits_dir.glob("*.json"))[-1:] != paths[-1:]:
                    continue  # superseded while we read: look again
                raise self._unreadable(paths[-1], exc) from exc
            except (OSError, ValueError, KeyError) as exc:
                raise self._unreadable(paths[-1], exc) from exc
            return checkpoint
        raise LakeError(f"{self.root}: the checkpoint kept changing while it was read")

    @staticmethod
    def _unreadable(record: Path, exc: Exception) -> LakeError:
        return LakeError(f"commit record {record} or its checkpoint is unreadable ({exc})")

    def data_files(self) -> list[str]:
        return [str(self.root / f["path"]) for c in self.commits() for f in c["files"]]

    def rollup_files(self) -> dict[str, list[str]] | None:
        """Committed rollup files by rollup name; None if some commit has none (then use raw)."""
        found: dict[str, list[str]] = {name: [] for name in ROLLUPS}
        for commit in self.commits():
            if commit["rows"] == 0:
                continue
            recorded = commit.get("rollups") or {}
            if set(recorded) != set(ROLLUPS):
                return None
            for name, entry in recorded.items():
                found[name].append(str(self.root / entry["path"]))
        return found

    def total_bytes(self) -> int:
        """Bytes of the event data files (rollups not included)."""
        return sum(f["bytes"] for c in self.commits() for f in c["files"])

    def rollup_bytes(self) -> int:
        return sum(r["bytes"] for c in self.commits() for r in (c.get("rollups") or {}).values())


DAY_US = 86_400 * 1_000_000


def time_ordered(events: pa.Table) -> pa.Table:
    """Events sorted by (event_time, source_pos); input already in order is not copied."""
    micros = events["event_time"].cast(pa.int64()).to_numpy()
    if len(micros) < 2 or bool(np.all(micros[1:] >= micros[:-1])):
        return events
    return events.sort_by([("event_time", "ascending"), ("source_pos", "ascending")])


def _split_by_date(events: pa.Table) -> list[tuple[str, pa.Table]]:
    """Time-ordered events cut into one zero-copy slice per UTC date."""
    if events.num_rows == 0:
        return []
    ordered = time_ordered(events)
    micros = ordered["event_time"].cast(pa.int64()).to_numpy()
    first_day, last_day = int(micros[0] // DAY_US), int(micros[-1] // DAY_US)
    edges = np.searchsorted(micros, np.arange(first_day, last_day + 2) * DAY_US, side="left")
    parts = []
    for offset, (start, stop) in enumerate(itertools.pairwise(edges)):
        if stop > start:
            day = date.fromordinal(date(1970, 1, 1).toordinal() + first_day + offset)
            parts.append((day.isoformat(), ordered.slice(int(start), int(stop - start))))
    return parts


# Parquet settings of every lake file. Rows arrive sorted by time (see _split_by_date), so the
# delta-encoded times and positions take almost no space. The keys (unique, sorted strings that
# share long prefixes) are stored as prefix lengths and suffixes (DELTA_BYTE_ARRAY), not tried as
# a dictionary. A session id recurs for each of the session's events: a dictionary stores it once
# per row group, and the dictionary page may grow to 16 MiB (past the 1 MiB default, a row group's
# sessions fell back to plain strings: 17 MB instead of 12.5 MB per 2 M events). Min/max
# statistics are kept only where a query can use them to skip row groups: computing them for
# every string column costs a quarter of the write time.
_DELTA_STRINGS = {"_hoodie_commit_seqno", "_hoodie_record_key", "event_key"}
_DELTA = {"event_time", "source_pos"}
_DICTIONARY_PAGE_BYTES = 16 << 20
_STATISTICS = {
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "user_id",
    "price",
    "source_pos",
    "_hoodie_commit_time",
}


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    names = set(schema.names)
    return {
        "compression": "zstd",
        "compression_level": 1,
        "row_group_size": ROW_GROUP_ROWS,
        "use_dictionary": sorted(names - _DELTA_STRINGS - _DELTA),
        "dictionary_pagesize_limit": _DICTIONARY_PAGE_BYTES,
        "column_encoding": {
            **{name: "DELTA_BINARY_PACKED" for name in names & _DELTA},
            **{name: "DELTA_BYTE_ARRAY" for name in names & _DELTA_STRINGS},
        },
        "write_statistics": sorted(names & _STATISTICS),
    }


def _write_table(table: pa.Table, sink: Any) -> None:
    """Write a table a row group at a time, each with one dictionary per label column. Chunks
    decoded apart carry dictionaries of their own, and at the first change of dictionary inside
    a row group Arrow's writer gives up the column's dictionary and writes plain strings (user
    agents took 8 times the bytes, IPs and brands twice). Unified per row group, so that only
    one row group's remapped indices are held at a time."""
    options = parquet_options(table.schema)
    group_rows = options.pop("row_group_size")
    with pq.ParquetWriter(sink, table.schema, **options) as writer:
        for start in range(0, table.num_rows, group_rows):
            group = table.slice(start, group_rows).unify_dictionaries()
            writer.write_table(group, row_group_size=group_rows)


def _write_parquet(table: pa.Table, path: Path) -> None:
    with path.open("wb") as sink:
        _write_table(table, sink)
        sink.flush()
        os.fsync(sink.fileno())


def _write_lake_file(loc: Location, relative: str, write: Callable[[Any], None]) -> int:
    """Run `write` on a sink for the lake file at `relative` (durably, on local disk); return
    the file's size."""
    if not loc.is_local:
        with loc.fs.open_output_stream(loc.path(relative)) as sink:
            write(sink)
        return loc.size(relative)
    path = loc.local_path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as sink:
        write(sink)
        sink.flush()
        os.fsync(sink.fileno())
    return path.stat().st_size


def write_parquet_batches(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, loc: Location, relative: str
) -> int:
    """Write a lake file from batches, one batch in memory at a time; return its size."""
    options = parquet_options(schema)
    group_rows = options.pop("row_group_size")

    def write_all(sink: Any) -> None:
        with pq.ParquetWriter(sink, schema, **options) as writer:
            for batch in batches:
                writer.write_batch(batch, row_group_size=group_rows)

    return _write_lake_file(loc, relative, write_all)


def write_parquet_file(table: pa.Table, loc: Location, relative: str) -> int:
    """Write a lake file at `relative` under `loc`; return its size."""
    return _write_lake_file(loc, relative, lambda sink: _write_table(table, sink))
