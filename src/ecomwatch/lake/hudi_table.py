"""An Apache Hudi copy-on-write table (version 6) written by ecomwatch, on local disk or S3.

Commit protocol (no rename needed, so it holds on object stores):

1. `.hoodie/<instant>.commit.requested`, then `.hoodie/<instant>.inflight`;
2. data files `<partition>/<fileId>_<token>_<instant>.parquet` (a new version of a file group
   when rows are updated or a small file is topped up; a new file group otherwise), and the
   commit's rollups under `.hoodie/.aux/ecomwatch/rollups/`;
3. `.hoodie/<instant>.commit`: the JSON commit metadata, written last, in one PUT. Until it
   exists no reader (hudi-rs, Spark, Trino, this module) sees the instant.

A writer that opens the table rolls back every instant left requested or inflight: it deletes
that instant's files and timeline entries. The engine's checkpoint (source positions, operator
state) is written beside the data, to `.hoodie/.aux/ecomwatch/checkpoints/<instant>.json`, and
the commit's `extraMetadata` names it: data and checkpoint commit together, and the timeline
stays small (a detector's state is megabytes; a service commits every few seconds). Once a
commit is complete, the checkpoint files of earlier instants are deleted; past 30 commits on the
active timeline, old file versions are cleaned and old commits archived (`hudi_archive`).
"""

from __future__ import annotations

import fcntl
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from ecomwatch.lake.base import Checkpoint, CommitInfo, LakeError, resolved
from ecomwatch.lake.hudi_archive import ROLLUP_DIR, ROLLUPS_KEY, clean, commit_rollups, maintain
from ecomwatch.lake.hudi_files import BaseFiles, latest_slices
from ecomwatch.lake.hudi_format import (
    HOODIE_DIR,
    PARTITION_METADATA,
    PROPERTIES_FILE,
    BaseFile,
    Operation,
    avro_schema,
    commit_metadata,
    new_instant_time,
    parse_properties,
    partition_metadata,
    table_properties,
)
from ecomwatch.lake.hudi_rows import DATA_SCHEMA, TABLE_NAME, split_partitions, with_keys
from ecomwatch.lake.hudi_timeline import AUX_DIR, Instant, Timeline
from ecomwatch.lake.hudi_writer import (
    MAX_FILE_BYTES,
    SMALL_FILE_BYTES,
    TOP_UP_ALWAYS_BYTES,
    FileSizing,
    PartitionWriter,
)
from ecomwatch.lake.parquet_table import write_parquet_file
from ecomwatch.lake.rollups import ROLLUPS, compute_rollups
from ecomwatch.lake.s3_lock import S3Lock
from ecomwatch.lake.storage import Location, locate
from ecomwatch.schema import EVENT_SCHEMA

__all__ = ["DATA_SCHEMA", "HudiTable", "Instant"]

# Our own files live in Hudi's auxiliary folder (AUX_DIR), where table readers do not look for
# partitions.
LOCK_FILE = f"{AUX_DIR}/lock"
CHECKPOINT_DIR = f"{AUX_DIR}/checkpoints"
CHECKPOINT_FILE_KEY = "ecomwatch.checkpoint.file"
CHECKPOINT_KEY = "ecomwatch.checkpoint"  # inline, as earlier versions wrote it
# Cleaning and archiving after commits (`hudi_archive`), Hudi's defaults: keep the file versions
# of the last 10 commits; archive down to 20 active commits once there are more than 30.
RETAIN_COMMITS = 10
KEEP_COMMITS = (20, 30)


class HudiTable:
    """`HudiTable(uri)` reads; `HudiTable(uri, writer=True)` creates, locks and recovers."""

    def __init__(
        self,
        uri: str,
        *,
        writer: bool = False,
        rollups: bool = True,
        small_file_bytes: int = SMALL_FILE_BYTES,
        max_file_bytes: int = MAX_FILE_BYTES,
        top_up_always_bytes: int = TOP_UP_ALWAYS_BYTES,
        retain_commits: int = RETAIN_COMMITS,
        keep_commits: tuple[int, int] = KEEP_COMMITS,
    ) -> None:
        if not 0 < retain_commits < keep_commits[0] < keep_commits[1]:
            raise ValueError("need 0 < retain_commits < keep_commits[0] < keep_commits[1]")
        self.retain_commits = retain_commits
        self.keep_commits = keep_commits
        self.loc: Location = locate(uri)
        self.location = str(uri)
        self.rollups = rollups
        self.sizing = FileSizing(small_file_bytes, max_file_bytes, top_up_always_bytes)
        self.timeline = Timeline(self.loc, self.location)
        self.files = BaseFiles(self.loc)
        self._lock_handle: Any = None
        if writer:
            if not self.loc.exists(PROPERTIES_FILE):
                self._create()
            self._lock()
            self.rollback_pending()
        elif not self.loc.exists(PROPERTIES_FILE):
            raise LakeError(
                f"{uri} is not a Hudi table (no {PROPERTIES_FILE}); "
                "create one with `ecomwatch run INPUT --lake DIR`"
            )
        self.properties = parse_properties(self.loc.read_bytes(PROPERTIES_FILE).decode())
        version = self.properties.get("hoodie.table.version")
        if version != "6" or self.properties.get("hoodie.table.type") != "COPY_ON_WRITE":
            raise LakeError(
                f"{uri}: a {self.properties.get('hoodie.table.type')} table of version {version};"
                " ecomwatch reads and writes COPY_ON_WRITE tables of version 6"
            )

    # setup ---------------------------------------------------------------------------------

    def _create(self) -> None:
        for directory in (
            HOODIE_DIR,
            f"{HOODIE_DIR}/.aux",
            f"{HOODIE_DIR}/.temp",
            f"{HOODIE_DIR}/archived",
        ):
            self.loc.makedirs(directory)
        schema = avro_schema(DATA_SCHEMA, TABLE_NAME)
        self.loc.write_atomic(PROPERTIES_FILE, table_properties(TABLE_NAME, schema).encode())

    def _lock(self) -> None:
        if not self.loc.is_local:
            self._lock_handle = S3Lock(self.loc, LOCK_FILE)
            self._lock_handle.acquire()
            return
        self.loc.makedirs(AUX_DIR)
        self._lock_handle = self.loc.local_path(LOCK_FILE).open("a+")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_handle.close()
            self._lock_handle = None
            raise LakeError(
                f"another writer holds {self.location}; wait for it to finish or stop it"
            ) from None

    def local_aux_dir(self) -> Path | None:
        return self.loc.local_path(AUX_DIR) if self.loc.is_local else None

    def close(self) -> None:
        if isinstance(self._lock_handle, S3Lock):
            self._lock_handle.release()
        elif self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
        self._lock_handle = None

    # timeline ------------------------------------------------------------------------------

    def instants(self) -> list[Instant]:
        return self.timeline.instants()

    def completed(self) -> list[str]:
        return self.timeline.completed()

    def metadata(self, instant: str) -> dict[str, Any]:
        return self.timeline.metadata(instant)

    def rollback_pending(self) -> list[str]:
        """Remove what unfinished instants wrote; return their times."""
        pending = [i.time for i in self.instants() if i.state != "completed"]
        if not pending:
            return pending
        suffixes = tuple(f"_{t}.parquet" for t in pending)  # data files of those instants
        rollups = {f"part-{t}.parquet" for t in pending}
        for path in self.loc.list_files("", recursive=True):  # listed once for all of them
            if path == LOCK_FILE or (path.startswith(HOODIE_DIR + "/") and "/rollups/" not in path):
                continue
            name = path.rsplit("/", 1)[-1]
            if name.endswith(suffixes) or name in rollups:
                self.loc.delete(path)
        for instant in pending:
            self.loc.delete(_checkpoint_path(instant))
            for suffix in (".inflight", ".commit.requested"):
                self.loc.delete(f"{HOODIE_DIR}/{instant}{suffix}")
        return pending

    # file slices ---------------------------------------------------------------------------

    def file_slices(self, as_of: str | None = None) -> dict[tuple[str, str], BaseFile]:
        """The latest base file of every file group, as of an instant (default: the latest)."""
        bases = self.files.listed()  # before the timeline: a later commit's files are skipped
        completed, archive = self.timeline.active()
        return latest_slices(bases, set(completed), archive, as_of)

    def data_files(self) -> list[str]:
        return [
            self.loc.duckdb_path(b.path)
            for b in sorted(self.file_slices().values(), key=lambda b: b.path)
        ]

    # writing -------------------------------------------------------------------------------

    def commit(self, events: pa.Table, checkpoint: Checkpoint) -> CommitInfo:
        """The engine's commit: insert, or upsert when events carry their own event_id."""
        has_ids = events.num_rows > 0 and events["event_id"].null_count < events.num_rows
        operation = Operation.UPSERT if has_ids else Operation.INSERT
        return self.write(events, operation, checkpoint=checkpoint)

    def write(
        self,
        events: pa.Table,
        operation: str,
        *,
        checkpoint: Checkpoint | None = None,
        delete_keys: list[str] | None = None,
    ) -> CommitInfo:
        if self._lock_handle is None:
            raise LakeError("the table was opened read-only")
        if isinstance(self._lock_handle, S3Lock):
            self._lock_handle.renew()
        previous = self.instants()
        instant = new_instant_time(after=previous[-1].time if previous else None)
        self.loc.write_atomic(f"{HOODIE_DIR}/{instant}.commit.requested", b"")
        self.loc.write_atomic(f"{HOODIE_DIR}/{instant}.inflight", b"")
        slices = self.file_slices()
        by_partition: dict[str, list[BaseFile]] = defaultdict(list)
        for base in slices.values():
            by_partition[base.partition].append(base)
        stats: dict[str, list[dict[str, Any]]] = {}
        rows = files = size = 0
        changed_existing = False
        incoming = with_keys(events)
        partitions = split_partitions(incoming)
        if delete_keys:
            for partition in by_partition:
                partitions.setdefault(partition, with_keys(EVENT_SCHEMA.empty_table()))
        for task, (partition, part) in enumerate(sorted(partitions.items())):
            self._ensure_partition(partition, instant)
            writer = PartitionWriter(
                self.files, self.sizing, instant, partition, task, by_partition.get(partition, [])
            )
            written = writer.write(part, operation, delete_keys or [])
            changed_existing |= writer.changed_existing
            if written:
                stats[partition] = written
                rows += sum(s["numWrites"] for s in written)
                files += len(written)
                size += sum(s["fileSizeInBytes"] for s in written)
        extra: dict[str, str] = {"schema": avro_schema(DATA_SCHEMA, TABLE_NAME)}
        if checkpoint is not None:  # after the data files: states still to come had that long
            state = json.dumps(resolved(checkpoint)).encode()
            self.loc.write_atomic(_checkpoint_path(instant), state)
            extra[CHECKPOINT_FILE_KEY] = _checkpoint_path(instant)
        rollups_valid = operation == Operation.INSERT and not changed_existing
        if self.rollups and rollups_valid and events.num_rows:
            written_rollups = {}
            for name, table in compute_rollups(events).items():
                relative = f"{ROLLUP_DIR}/{name}/part-{instant}.parquet"
                write_parquet_file(table, self.loc, relative)
                written_rollups[name] = relative
            extra[ROLLUPS_KEY] = json.dumps(written_rollups)
        elif not rollups_valid:
            extra[ROLLUPS_KEY] = json.dumps(None)  # rows changed: reports must read raw events
        self.loc.write_atomic(
            f"{HOODIE_DIR}/{instant}.commit", commit_metadata(stats, operation, extra)
        )
        if checkpoint is not None:
            self._drop_checkpoints_before(instant)
        retain, (keep_min, keep_max) = self.retain_commits, self.keep_commits
        maintain(self.timeline, self.files, retain=retain, keep_min=keep_min, keep_max=keep_max)
        return CommitInfo(int(instant), rows, files, size)

    def _drop_checkpoints_before(self, instant: str) -> None:
        """Only the latest checkpoint is ever read back: earlier ones go once it is committed
        (a crash before this leaves a few extra files, which the next commit removes)."""
        for path in self.loc.list_files(CHECKPOINT_DIR):
            name = path.rsplit("/", 1)[-1]
            if name.endswith(".json") and name[: -len(".json")] < instant:
                self.loc.delete(path)

    def _ensure_partition(self, partition: str, instant: str) -> None:
        if not self.loc.exists(partition, PARTITION_METADATA):
            self.loc.makedirs(partition)
            self.loc.write_atomic(
                f"{partition}/{PARTITION_METADATA}", partition_metadata(instant).encode()
            )

    def delete(self, keys: list[str], *, checkpoint: dict[str, Any] | None = None) -> CommitInfo:
        return self.write(
            EVENT_SCHEMA.empty_table(), Operation.DELETE, checkpoint=checkpoint, delete_keys=keys
        )

    def clean(self, *, retain_commits: int = RETAIN_COMMITS) -> list[str]:
        """Delete file versions no snapshot of the last `retain_commits` commits needs."""
        return clean(self.timeline, self.files, retain_commits=retain_commits)

    # reading -------------------------------------------------------------------------------

    def last_checkpoint(self) -> dict[str, Any] | None:
        # A writer deletes a checkpoint once a newer one is committed: a reader that lost that
        # race finds the newer commit on its next look.
        for _ in range(3):
            newest = self.completed()
            for instant in reversed(newest):
                extra = self.metadata(instant).get("extraMetadata") or {}
                if CHECKPOINT_FILE_KEY in extra:
                    path = extra[CHECKPOINT_FILE_KEY]
                    try:
                        checkpoint: dict[str, Any] = json.loads(self.loc.read_bytes(path))
                    except FileNotFoundError:
                        if self.completed()[-1:] != newest[-1:]:
                            break  # superseded while we read: look again
                        raise self._lost_checkpoint(path, instant, "missing") from None
                    except (OSError, ValueError) as exc:
                        raise self._lost_checkpoint(path, instant, str(exc)) from exc
                    return checkpoint
                if CHECKPOINT_KEY in extra:
                    inline: dict[str, Any] = json.loads(extra[CHECKPOINT_KEY])
                    return inline
            else:
                return None
        raise LakeError(f"{self.location}: the checkpoint kept changing while it was read")

    def _lost_checkpoint(self, path: str, instant: str, why: str) -> LakeError:
        return LakeError(
            f"{self.location}: the checkpoint {path} of commit {instant} is missing or corrupt "
            f"({why}); the table needs repair (nothing was deleted)"
        )

    def rollup_files(self) -> dict[str, list[str]] | None:
        completed, archive = self.timeline.active()
        if archive.rollups is None:
            return None
        found = {name: list(archive.rollups.get(name, [])) for name in ROLLUPS}
        for instant in completed:
            written = commit_rollups(self.metadata(instant))
            if written is None:
                return None
            for name, path in written.items():
                found[name].append(path)
        return {name: [self.loc.duckdb_path(p) for p in paths] for name, paths in found.items()}

    def commits(self) -> list[dict[str, Any]]:
        history = []
        for instant, meta in self.timeline.history().items():
            writes = [s for stats in meta.get("partitionToWriteStats", {}).values() for s in stats]
            history.append(
                {
                    "instant": instant,
                    "operation": meta.get("operationType"),
                    "files": len(writes),
                    "inserts": sum(s.get("numInserts", 0) for s in writes),
                    "updates": sum(s.get("numUpdateWrites", 0) for s in writes),
                    "deletes": sum(s.get("numDeletes", 0) for s in writes),
                    "bytes": sum(s.get("fileSizeInBytes", 0) for s in writes),
                }
            )
        return history

    def total_bytes(self) -> int:
        return sum(self.loc.size(b.path) for b in self.file_slices().values())

    def rollup_bytes(self) -> int:
        files = self.rollup_files() or {}
        prefix = self.loc.duckdb_path("")
        return sum(self.loc.size(p[len(prefix) :]) for paths in files.values() for p in paths)


def _checkpoint_path(instant: str) -> str:
    return f"{CHECKPOINT_DIR}/{instant}.json"
