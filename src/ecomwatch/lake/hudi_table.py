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
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ecomwatch.lake.base import CommitInfo, LakeError
from ecomwatch.lake.hudi_archive import (
    AUX_DIR,
    ROLLUP_DIR,
    ROLLUPS_KEY,
    Archive,
    archived_commits,
    commit_rollups,
    maintain,
)
from ecomwatch.lake.hudi_format import (
    HOODIE_DIR,
    META_COLUMNS,
    PARTITION_FIELD,
    PARTITION_METADATA,
    PROPERTIES_FILE,
    RECORD_KEY_FIELD,
    BaseFile,
    Operation,
    avro_schema,
    base_file_name,
    commit_metadata,
    new_instant_time,
    parse_base_file,
    parse_properties,
    parse_timeline_name,
    partition_metadata,
    table_properties,
    write_stat,
)
from ecomwatch.lake.parquet_table import DAY_US, time_ordered, write_parquet_file
from ecomwatch.lake.rollups import ROLLUPS, compute_rollups
from ecomwatch.lake.s3_lock import S3Lock
from ecomwatch.lake.storage import Location, locate
from ecomwatch.schema import EVENT_SCHEMA, LABEL_TYPE

TABLE_NAME = "ecomwatch_events"
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
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
SMALL_FILE_BYTES = 32 << 20  # a file group below this takes new inserts first
MAX_FILE_BYTES = 128 << 20  # new inserts fill file groups up to about this size
# Topping up rewrites the whole file: a commit tops up a small file only while rewriting it
# costs at most TOP_UP_RATIO times the bytes it inserts, or the file is below TOP_UP_ALWAYS_BYTES.
# Frequent small commits (a live service commits every few seconds) would otherwise rewrite a
# growing file each time, up to SMALL_FILE_BYTES (write amplification of 4-5 and a read of the
# whole file into memory per commit); with the bound, files grow to a few commits' worth.
TOP_UP_RATIO = 2.0
TOP_UP_ALWAYS_BYTES = 8 << 20
DEFAULT_BYTES_PER_ROW = 32.0

# A row of the table: the event schema, its record key and its partition value...
BODY_SCHEMA = pa.schema(
    [
        *EVENT_SCHEMA,
        pa.field(RECORD_KEY_FIELD, pa.string(), nullable=False),
        pa.field(PARTITION_FIELD, LABEL_TYPE, nullable=False),
    ]
)
# ...and as stored, after Hudi's five meta columns (strings in Parquet; the ones with few
# distinct values are dictionary-encoded in memory, which is what keeps commits cheap).
_META_TYPES = {
    "_hoodie_commit_time": LABEL_TYPE,
    "_hoodie_commit_seqno": pa.string(),
    "_hoodie_record_key": pa.string(),
    "_hoodie_partition_path": LABEL_TYPE,
    "_hoodie_file_name": LABEL_TYPE,
}
DATA_SCHEMA = pa.schema([*[pa.field(n, _META_TYPES[n]) for n in META_COLUMNS], *BODY_SCHEMA])


@dataclass(frozen=True)
class Instant:
    time: str
    state: str  # requested, inflight, completed


def prefixed_numbers(prefix: str, numbers: np.ndarray, width: int) -> pa.StringArray:
    """`prefix` + each number zero-padded to `width` digits, built with numpy in one buffer
    (an order of magnitude faster than casting and joining strings row by row)."""
    head = prefix.encode()
    size = len(head) + width
    chars = np.empty((len(numbers), size), dtype=np.uint8)
    chars[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    rest = numbers.astype(np.int64, copy=True)
    for column in range(size - 1, len(head) - 1, -1):
        chars[:, column] = 48 + rest % 10
        rest //= 10
    offsets = np.arange(0, (len(numbers) + 1) * size, size, dtype=np.int32)
    return pa.StringArray.from_buffers(len(numbers), pa.py_buffer(offsets), pa.py_buffer(chars))


KEY_POSITION_DIGITS = 12
# Up to this many sources in a chunk (files), keys are built one source at a time; past it
# (a stream's records, one source each), in one vectorized join.
_FEW_SOURCES = 8


def record_keys(events: pa.Table) -> pa.Array:
    """The record key: the event's own event_id, else `<source fingerprint>:<position>` with
    the position zero-padded to 12 digits."""
    parts = []
    for chunk in events.select(["source", "source_pos", "event_id"]).to_batches():
        source, position, event_id = chunk.columns
        sources = source.dictionary.to_pylist()
        codes = source.indices.to_numpy(zero_copy_only=False)
        positions = position.to_numpy(zero_copy_only=False)
        keys = pa.nulls(len(chunk), pa.string())
        if len(sources) > _FEW_SOURCES:  # a stream: a source per record
            padded = prefixed_numbers(":", positions, KEY_POSITION_DIGITS)
            keys = pc.binary_join_element_wise(source.dictionary.take(source.indices), padded, "")
            sources = []
        for code, name in enumerate(sources):
            rows = np.flatnonzero(codes == code)
            if len(rows) == len(chunk):
                keys = prefixed_numbers(f"{name}:", positions, KEY_POSITION_DIGITS)
            elif len(rows):
                built = prefixed_numbers(f"{name}:", positions[rows], KEY_POSITION_DIGITS)
                keys = pc.replace_with_mask(keys, _mask(rows, len(chunk)), built)
        parts.append(
            pc.coalesce(event_id.cast(pa.string()), keys)
            if event_id.null_count < len(chunk)
            else keys
        )
    return pa.chunked_array(parts, pa.string()) if parts else pa.chunked_array([], pa.string())


def _mask(rows: np.ndarray, n: int) -> pa.Array:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return pa.array(mask)


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
        self.small_file_bytes = small_file_bytes
        self.max_file_bytes = max_file_bytes
        self.top_up_always_bytes = top_up_always_bytes
        self._lock_handle: Any = None
        self._metadata_cache: dict[str, dict[str, Any]] = {}
        self._file_facts: dict[str, tuple[int, int]] = {}  # path → (bytes, rows)
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
        """Every commit instant with its most advanced state, oldest first."""
        states: dict[str, str] = {}
        order = {"requested": 0, "inflight": 1, "completed": 2}
        for name in self.loc.list_files(HOODIE_DIR):
            parsed = parse_timeline_name(name.rsplit("/", 1)[-1])
            if parsed is None:
                continue
            time, state = parsed
            if time not in states or order[state] > order[states[time]]:
                states[time] = state
        return [Instant(t, states[t]) for t in sorted(states)]

    def completed(self) -> list[str]:
        """The completed instants of the active timeline (archived ones are not listed)."""
        return [i.time for i in self.instants() if i.state == "completed"]

    def _timeline(self) -> tuple[list[str], Archive]:
        """The active completed instants beyond the archive, and the archive (read second:
        an instant archived after the listing is then within it)."""
        completed = self.completed()
        archive = Archive.read(self.loc)
        return archive.active(completed), archive

    def file_facts(self, path: str) -> tuple[int, int]:
        """A base file's size and rows, read once: a file version never changes (a writer
        asks for every file group's on every commit)."""
        if path not in self._file_facts:
            with self.loc.fs.open_input_file(self.loc.path(path)) as f:
                self._file_facts[path] = (f.size(), pq.ParquetFile(f).metadata.num_rows)
        return self._file_facts[path]

    def forget(self, instants: list[str]) -> None:
        """Drop archived instants' metadata from the cache (a service runs for weeks)."""
        for instant in instants:
            self._metadata_cache.pop(instant, None)

    def metadata(self, instant: str) -> dict[str, Any]:
        if instant not in self._metadata_cache:
            try:
                data = json.loads(self.loc.read_bytes(f"{HOODIE_DIR}/{instant}.commit"))
            except (OSError, ValueError) as exc:
                raise LakeError(
                    f"{self.location}: the timeline file {HOODIE_DIR}/{instant}.commit is "
                    f"missing or corrupt ({exc}); the table needs repair (nothing was deleted)"
                ) from exc
            self._metadata_cache[instant] = data
        return self._metadata_cache[instant]

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

    def partitions(self) -> list[str]:
        return [
            d
            for d in self.loc.list_dirs()
            if d.startswith(f"{PARTITION_FIELD}=") and self.loc.exists(d, PARTITION_METADATA)
        ]

    def file_slices(self, as_of: str | None = None) -> dict[tuple[str, str], BaseFile]:
        """The latest base file of every file group, as of an instant (default: the latest)."""
        bases = self._all_base_files()  # before the timeline: a later commit's files are skipped
        completed, archive = self._timeline()
        return _latest_slices(bases, set(completed), archive, as_of)

    def data_files(self) -> list[str]:
        return [
            self.loc.duckdb_path(b.path)
            for b in sorted(self.file_slices().values(), key=lambda b: b.path)
        ]

    # writing -------------------------------------------------------------------------------

    def commit(self, events: pa.Table, checkpoint: dict[str, Any]) -> CommitInfo:
        """The engine's commit: insert, or upsert when events carry their own event_id."""
        has_ids = events.num_rows > 0 and events["event_id"].null_count < events.num_rows
        operation = Operation.UPSERT if has_ids else Operation.INSERT
        return self.write(events, operation, checkpoint=checkpoint)

    def write(
        self,
        events: pa.Table,
        operation: str,
        *,
        checkpoint: dict[str, Any] | None = None,
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
        incoming = _with_keys(events)
        partitions = _split_partitions(incoming)
        if delete_keys:
            for partition in by_partition:
                partitions.setdefault(partition, _with_keys(EVENT_SCHEMA.empty_table()))
        for task, (partition, part) in enumerate(sorted(partitions.items())):
            self._ensure_partition(partition, instant)
            writer = _PartitionWriter(
                self, instant, partition, task, by_partition.get(partition, [])
            )
            written = writer.write(part, operation, delete_keys or [])
            changed_existing |= writer.changed_existing
            if written:
                stats[partition] = written
                rows += sum(s["numWrites"] for s in written)
                files += len(written)
                size += sum(s["fileSizeInBytes"] for s in written)
        extra: dict[str, str] = {"schema": avro_schema(DATA_SCHEMA, TABLE_NAME)}
        if checkpoint is not None:
            self.loc.write_atomic(_checkpoint_path(instant), json.dumps(checkpoint).encode())
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
        maintain(self, retain=retain, keep_min=keep_min, keep_max=keep_max)
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

    def clean(self, *, retain_commits: int = 10) -> list[str]:
        """Delete file versions no snapshot of the last `retain_commits` commits needs."""
        bases = self._all_base_files()  # listed once for every snapshot kept
        done, archive = self._timeline()
        if len(done) <= retain_commits:
            return []
        completed = set(done)
        oldest_kept = done[-retain_commits]
        keep: set[str] = set()
        for instant in done[-retain_commits:]:
            keep |= {b.path for b in _latest_slices(bases, completed, archive, instant).values()}
        removed = []
        for base in bases:
            if (
                base.path not in keep
                and archive.committed(base.instant, completed)
                and base.instant < oldest_kept
            ):
                self.loc.delete(base.path)
                self._file_facts.pop(base.path, None)
                removed.append(base.path)
        return removed

    def _all_base_files(self) -> list[BaseFile]:
        found = []
        for partition in self.partitions():
            for path in self.loc.list_files(partition):
                base = parse_base_file(partition, path.rsplit("/", 1)[-1])
                if base is not None:
                    found.append(base)
        return found

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
        completed, archive = self._timeline()
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
        completed, _ = self._timeline()
        timeline = {**archived_commits(self.loc), **{i: self.metadata(i) for i in completed}}
        for instant, meta in timeline.items():
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


def _constant(value: str, n: int) -> pa.DictionaryArray:
    """n copies of one string, stored once."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))


def _partition_values(event_time: pa.ChunkedArray) -> pa.DictionaryArray:
    """`event_date=YYYY-MM-DD` per row, from epoch days (no per-row string formatting)."""
    days = event_time.cast(pa.int64()).to_numpy() // DAY_US
    first = int(days.min()) if len(days) else 0
    names = [
        f"{PARTITION_FIELD}={date.fromordinal(EPOCH_ORDINAL + d).isoformat()}"
        for d in range(first, int(days.max()) + 1 if len(days) else first)
    ]
    return pa.DictionaryArray.from_arrays(
        pa.array((days - first).astype(np.int32)), pa.array(names, pa.string())
    )


def _latest_slices(
    bases: list[BaseFile], completed: set[str], archive: Archive, as_of: str | None
) -> dict[tuple[str, str], BaseFile]:
    """Per file group, its newest base file of a committed instant no later than `as_of`."""
    latest: dict[tuple[str, str], BaseFile] = {}
    for base in bases:
        if not archive.committed(base.instant, completed) or (
            as_of is not None and base.instant > as_of
        ):
            continue
        key = (base.partition, base.file_id)
        if key not in latest or base.instant > latest[key].instant:
            latest[key] = base
    return latest


def _with_keys(events: pa.Table) -> pa.Table:
    """Events as table rows: record key, partition value, and empty meta columns (new rows
    have no commit time yet: _stamp gives them this commit's)."""
    events = events.cast(EVENT_SCHEMA)
    n = events.num_rows
    body = {name: events[name] for name in EVENT_SCHEMA.names}
    body[RECORD_KEY_FIELD] = record_keys(events)
    body[PARTITION_FIELD] = _partition_values(events["event_time"])
    meta = {f.name: pa.nulls(n, f.type) for f in DATA_SCHEMA if f.name in META_COLUMNS}
    return pa.table({**meta, **body}, schema=DATA_SCHEMA)


def _split_partitions(events: pa.Table) -> dict[str, pa.Table]:
    """Time-ordered rows cut into one zero-copy slice per partition."""
    if events.num_rows == 0:
        return {}
    ordered = time_ordered(events)
    days = ordered["event_time"].cast(pa.int64()).to_numpy() // DAY_US
    edges = np.flatnonzero(np.diff(days)) + 1
    starts = [0, *edges.tolist()]
    stops = [*edges.tolist(), len(days)]
    parts = {}
    for start, stop in zip(starts, stops, strict=True):
        day = date.fromordinal(EPOCH_ORDINAL + int(days[start])).isoformat()
        parts[f"{PARTITION_FIELD}={day}"] = ordered.slice(start, stop - start)
    return parts


class _PartitionWriter:
    """Writes one partition's share of a commit: updates, deletes, small-file top-ups, inserts."""

    def __init__(
        self, table: HudiTable, instant: str, partition: str, task: int, slices: list[BaseFile]
    ) -> None:
        self.table, self.instant, self.partition, self.task = table, instant, partition, task
        self.slices = slices
        self.changed_existing = False
        self._files = 0

    def write(
        self, incoming: pa.Table, operation: str, delete_keys: list[str]
    ) -> list[dict[str, Any]]:
        stats: list[dict[str, Any]] = []
        if operation == Operation.UPSERT:  # inserts have unique keys by construction
            incoming = _latest_per_key(incoming)
        rewritten: set[str] = set()
        if operation in (Operation.UPSERT, Operation.DELETE) and self.slices:
            incoming = self._apply_to_existing(incoming, operation, delete_keys, stats, rewritten)
        if operation == Operation.DELETE or incoming.num_rows == 0:
            return stats
        per_row = self._bytes_per_row()
        capacity = max(1, int(self.table.max_file_bytes / per_row))
        sizes = {b.path: self.table.file_facts(b.path)[0] for b in self.slices}
        worth_rewriting = min(
            self.table.small_file_bytes,
            max(self.table.top_up_always_bytes, TOP_UP_RATIO * per_row * incoming.num_rows),
        )
        small = sorted(
            (
                b
                for b in self.slices
                if b.file_id not in rewritten and sizes[b.path] < worth_rewriting
            ),
            key=lambda b: sizes[b.path],
        )
        for base in small:
            if incoming.num_rows == 0:
                break
            room = max(0, capacity - self.table.file_facts(base.path)[1])
            if room == 0:
                continue
            take, incoming = incoming.slice(0, room), incoming.slice(room)
            old = self._read(base)
            stats.append(
                self._write_file(
                    base.file_id,
                    pa.concat_tables([old, take]),
                    prev=base.instant,
                    inserts=take.num_rows,
                )
            )
        while incoming.num_rows:
            take, incoming = incoming.slice(0, capacity), incoming.slice(capacity)
            stats.append(self._write_file(_new_file_id(), take, prev="null", inserts=take.num_rows))
        return stats

    def _apply_to_existing(
        self,
        incoming: pa.Table,
        operation: str,
        delete_keys: list[str],
        stats: list[dict[str, Any]],
        rewritten: set[str],
    ) -> pa.Table:
        keys = (
            pa.array(delete_keys, pa.string())
            if operation == Operation.DELETE
            else incoming[RECORD_KEY_FIELD]
        )
        remaining = incoming
        for base in self.slices:
            existing = self._read(base)
            hit = pc.is_in(existing[RECORD_KEY_FIELD], value_set=keys)
            if not pc.any(hit).as_py():
                continue
            self.changed_existing = True
            rewritten.add(base.file_id)
            kept = existing.filter(pc.invert(hit))
            if operation == Operation.DELETE:
                deleted = existing.num_rows - kept.num_rows
                stats.append(
                    self._write_file(base.file_id, kept, prev=base.instant, deletes=deleted)
                )
                continue
            replaced = existing.filter(hit)
            winners, losers = _precombine(remaining, replaced)
            # Existing rows that win over the incoming version stay as they are.
            kept = pa.concat_tables([kept, losers]) if losers.num_rows else kept
            updates = remaining.filter(pc.is_in(remaining[RECORD_KEY_FIELD], value_set=winners))
            remaining = remaining.filter(
                pc.invert(
                    pc.is_in(remaining[RECORD_KEY_FIELD], value_set=replaced[RECORD_KEY_FIELD])
                )
            )
            stats.append(
                self._write_file(
                    base.file_id,
                    pa.concat_tables([kept, updates]),
                    prev=base.instant,
                    updates=updates.num_rows,
                )
            )
        return remaining

    def _bytes_per_row(self) -> float:
        facts = [self.table.file_facts(b.path) for b in self.slices]
        total_rows = sum(rows for _, rows in facts)
        return sum(size for size, _ in facts) / total_rows if total_rows else DEFAULT_BYTES_PER_ROW

    def _read(self, base: BaseFile) -> pa.Table:
        """A base file's rows: kept rows keep their commit time and sequence number."""
        with self.table.loc.fs.open_input_file(self.table.loc.path(base.path)) as f:
            return pq.read_table(f, columns=DATA_SCHEMA.names).cast(DATA_SCHEMA)

    def _write_file(
        self,
        file_id: str,
        rows: pa.Table,
        *,
        prev: str,
        inserts: int = 0,
        updates: int = 0,
        deletes: int = 0,
    ) -> dict[str, Any]:
        token = f"{self.task}-{self._files}-0"
        self._files += 1
        name = base_file_name(file_id, token, self.instant)
        data = _stamp(rows, self.instant, self.partition, name, self.task)
        relative = f"{self.partition}/{name}"
        size = write_parquet_file(time_ordered(data), self.table.loc, relative)
        return write_stat(
            file_id=file_id,
            path=relative,
            partition=self.partition,
            prev_commit=prev,
            inserts=inserts,
            updates=updates,
            deletes=deletes,
            records=data.num_rows,
            size=size,
        )


def _new_file_id() -> str:
    import uuid

    return f"{uuid.uuid4()}-0"


def _latest_per_key(incoming: pa.Table) -> pa.Table:
    """Within a batch, one row per record key: the one with the largest event_time."""
    if incoming.num_rows < 2:
        return incoming
    keys = incoming[RECORD_KEY_FIELD]
    if pc.count_distinct(keys).as_py() == incoming.num_rows:
        return incoming
    order = incoming.sort_by([(RECORD_KEY_FIELD, "ascending"), ("event_time", "descending")])
    key_array = order[RECORD_KEY_FIELD].combine_chunks().to_numpy(zero_copy_only=False)
    first = np.ones(len(key_array), dtype=bool)
    first[1:] = key_array[1:] != key_array[:-1]
    return order.filter(pa.array(first))


def _precombine(incoming: pa.Table, existing: pa.Table) -> tuple[pa.Array, pa.Table]:
    """Keys where the incoming row wins (event_time >= existing), and existing rows that win."""
    theirs = dict(
        zip(existing[RECORD_KEY_FIELD].to_pylist(), existing["event_time"].to_pylist(), strict=True)
    )
    winners: list[str] = []
    losing_keys: list[str] = []
    for key, time in zip(
        incoming[RECORD_KEY_FIELD].to_pylist(), incoming["event_time"].to_pylist(), strict=True
    ):
        if key not in theirs:
            continue
        (winners if time >= theirs[key] else losing_keys).append(key)
    losing = pa.array(losing_keys, pa.string())
    losers = existing.filter(pc.is_in(existing[RECORD_KEY_FIELD], value_set=losing))
    return pa.array(winners, pa.string()), losers


def _stamp(rows: pa.Table, instant: str, partition: str, file_name: str, task: int) -> pa.Table:
    """Fill the five Hudi meta columns of rows about to be written to `file_name`.

    Rows carried over from an earlier version of the file group keep their commit time and
    sequence number (incremental queries rely on them); new and updated rows get this commit's.
    """
    n = rows.num_rows
    fresh_seqno = prefixed_numbers(f"{instant}_{task}_", np.arange(n), 10)
    commit_time = rows["_hoodie_commit_time"]
    if commit_time.null_count == n:
        commit_time, seqno = _constant(instant, n), fresh_seqno
    else:
        commit_time = pc.coalesce(commit_time.cast(pa.string()), pa.scalar(instant))
        seqno = pc.coalesce(rows["_hoodie_commit_seqno"], fresh_seqno)
    meta = {
        "_hoodie_commit_time": commit_time,
        "_hoodie_commit_seqno": seqno,
        "_hoodie_record_key": rows[RECORD_KEY_FIELD],
        "_hoodie_partition_path": _constant(partition, n),
        "_hoodie_file_name": _constant(file_name, n),
    }
    body = {name: rows[name] for name in BODY_SCHEMA.names}
    return pa.table({**meta, **body}).cast(DATA_SCHEMA)
