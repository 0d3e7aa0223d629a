"""A row of the Hudi table: the event, its record key and partition value, Hudi's meta columns.

The record key is the event's own `event_id` when it has one, else `<source>:<position>`;
the partition is the event's UTC day (`event_date=YYYY-MM-DD`). Built column-wise (NumPy and
Arrow compute), never row by row.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.lake.hudi_format import META_COLUMNS, PARTITION_FIELD, RECORD_KEY_FIELD
from ecomwatch.lake.parquet_table import DAY_US, time_ordered
from ecomwatch.schema import EVENT_SCHEMA, LABEL_TYPE, as_events, constant

TABLE_NAME = "ecomwatch_events"
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

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


def prefixed_numbers(prefix: str, numbers: np.ndarray, width: int) -> pa.StringArray:
    """`prefix` + each (non-negative) number zero-padded to `width` digits, built with NumPy in
    one buffer (an order of magnitude faster than casting and joining strings row by row). The
    digits are worked out a row of digits at a time in a contiguous array, nine at a time in
    32-bit arithmetic, and laid into the strings in one copy: 2 M keys 250-270 ms -> 150 ms,
    against dividing 64-bit numbers straight into the strings' columns."""
    head = prefix.encode()
    size = len(head) + width
    digits = np.empty((width, len(numbers)), dtype=np.uint8)  # digit row → each number's
    rest = numbers.astype(np.int64, copy=True)
    row = width
    while row > 0:
        take = min(9, row)  # 10**9 fits in 32 bits
        part = (rest % 10**take).astype(np.uint32)
        rest //= 10**take
        for digit in range(row - 1, row - take - 1, -1):
            np.remainder(part, 10, out=digits[digit], casting="unsafe")
            part //= 10
        row -= take
    digits += ord("0")
    chars = np.empty((len(numbers), size), dtype=np.uint8)
    chars[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    chars[:, len(head) :] = digits.T
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


def partition_values(event_time: pa.ChunkedArray) -> pa.DictionaryArray:
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


def with_keys(events: pa.Table) -> pa.Table:
    """Events as table rows: record key, partition value, and empty meta columns (new rows
    have no commit time yet: `stamp` gives them this commit's)."""
    events = as_events(events)
    n = events.num_rows
    body = {name: events[name] for name in EVENT_SCHEMA.names}
    body[RECORD_KEY_FIELD] = record_keys(events)
    body[PARTITION_FIELD] = partition_values(events["event_time"])
    meta = {f.name: pa.nulls(n, f.type) for f in DATA_SCHEMA if f.name in META_COLUMNS}
    return pa.table({**meta, **body}, schema=DATA_SCHEMA)


def split_partitions(events: pa.Table) -> dict[str, pa.Table]:
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


def stamp(rows: pa.Table, instant: str, partition: str, file_name: str, task: int) -> pa.Table:
    """Fill the five Hudi meta columns of rows about to be written to `file_name`.

    Rows carried over from an earlier version of the file group keep their commit time and
    sequence number (incremental queries rely on them); new and updated rows get this commit's.
    """
    n = rows.num_rows
    fresh_seqno = prefixed_numbers(f"{instant}_{task}_", np.arange(n), 10)
    commit_time = rows["_hoodie_commit_time"]
    if commit_time.null_count == n:
        commit_time, seqno = constant(instant, n), fresh_seqno
    else:
        commit_time = pc.coalesce(commit_time.cast(pa.string()), pa.scalar(instant))
        seqno = pc.coalesce(rows["_hoodie_commit_seqno"], fresh_seqno)
    meta = {
        "_hoodie_commit_time": commit_time,
        "_hoodie_commit_seqno": seqno,
        "_hoodie_record_key": rows[RECORD_KEY_FIELD],
        "_hoodie_partition_path": constant(partition, n),
        "_hoodie_file_name": constant(file_name, n),
    }
    body = {name: rows[name] for name in BODY_SCHEMA.names}
    return pa.table({**meta, **body}).cast(DATA_SCHEMA)
