"""Events into a Kinesis stream with PutRecords: packed, sized within the service's limits,
and retried until every record is in.

Limits (the service's): at most 500 records and 5 MiB per call, 1 MiB per record (data and
partition key together). A call the service throttles as a whole is retried by `KinesisCalls`;
a call that comes back with some records failed (`ErrorCode` per entry:
`ProvisionedThroughputExceededException` or `InternalFailure`) is followed by another with
exactly those records, after a backoff, until none is left.

Packing (`--per-record N`): N events in one record as NDJSON, the way shops batch to stay
within a shard's 1,000 records a second. Events are grouped by the shard their partition key
hashes to (MD5 of the key, as Kinesis routes it), in time order, so a record holds events of
one shard's keys and the order of each key's events is kept.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.serve.ndjson import encode_lines
from ecomwatch.sources.base import SourceError
from ecomwatch.sources.kinesis_api import KinesisCalls, StreamRef, kinesis_client

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 << 20
MAX_BYTES_PER_RECORD = 1 << 20


class PartitionBy(StrEnum):
    IP = "ip"
    USER_SESSION = "user_session"


@dataclass(frozen=True)
class OutRecord:
    partition_key: str
    data: bytes
    events: int

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode())


@dataclass
class PutStats:
    events: int = 0
    records: int = 0
    calls: int = 0
    retried_records: int = 0  # records a response marked failed, sent again
    seconds: float = 0.0
    failed_by_error: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "records": self.records,
            "calls": self.calls,
            "retried_records": self.retried_records,
            "failed_by_error": self.failed_by_error,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events / self.seconds) if self.seconds else 0,
        }


class KinesisProducer:
    def __init__(
        self,
        stream: StreamRef | str,
        *,
        client: Any = None,
        max_delay_s: float = 5.0,
    ) -> None:
        self.stream = StreamRef.parse(stream) if isinstance(stream, str) else stream
        self.calls = KinesisCalls(
            client if client is not None else kinesis_client(self.stream), self.stream
        )
        self.max_delay_s = max_delay_s
        self.stats = PutStats()

    def shard_ranges(self) -> np.ndarray:
        """Starting hash keys of the open shards, sorted (as Python ints: 128-bit)."""
        starts = [
            int(shard["HashKeyRange"]["StartingHashKey"])
            for shard in self.calls.list_shards()
            if "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {})
        ]
        if not starts:
            raise SourceError(self.stream.uri, "ListShards: the stream has no open shard")
        return np.array(sorted(starts), dtype=object)

    def put(self, records: Sequence[OutRecord]) -> None:
        """Send every record; returns once the service has taken them all."""
        for call in in_calls(records):
            self.put_call(call)

    def put_call(self, records: list[OutRecord]) -> None:
        """One PutRecords' worth of records, then the failed ones again until none is left."""
        pending = records
        attempt = 0
        while pending:
            response = self.calls(
                "put_records",
                Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
            )
            self.stats.calls += 1
            failed = []
            for record, entry in zip(pending, response["Records"], strict=True):
                if "ErrorCode" in entry:
                    failed.append(record)
                    code = entry["ErrorCode"]
                    self.stats.failed_by_error[code] = self.stats.failed_by_error.get(code, 0) + 1
                else:
                    self.stats.records += 1
                    self.stats.events += record.events
            if failed:
                self.stats.retried_records += len(failed)
                time.sleep(random.uniform(0, min(self.max_delay_s, 0.05 * 2**attempt)))
                attempt += 1
            pending = failed


def in_calls(records: Sequence[OutRecord]) -> Iterator[list[OutRecord]]:
    """The records in calls of ≤ 500 records and ≤ 5 MiB."""
    call: list[OutRecord] = []
    size = 0
    for record in records:
        if call and (len(call) == MAX_RECORDS_PER_CALL or size + record.size > MAX_BYTES_PER_CALL):
            yield call
            call, size = [], 0
        call.append(record)
        size += record.size
    if call:
        yield call


def pack_records(
    events: pa.Table,
    *,
    partition_by: PartitionBy = PartitionBy.IP,
    per_record: int = 1,
    shard_starts: np.ndarray | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> list[OutRecord]:
    """The events (in time order) as records of up to `per_record` NDJSON lines each."""
    if events.num_rows == 0:
        return []
    lines = encode_lines(events, con)
    keys = _partition_keys(events, partition_by)
    line_bytes = np.diff(lines.offsets)
    if int(line_bytes.max()) + 256 > MAX_BYTES_PER_RECORD:
        raise ValueError("an event is larger than a Kinesis record's 1 MiB")
    key_list = keys.to_pylist()
    if per_record == 1:
        return [OutRecord(key_list[i], lines.body(i, i + 1), 1) for i in range(len(lines))]
    shards = _shard_of(keys, shard_starts)
    order = np.argsort(shards, kind="stable")  # by shard, time order kept inside each
    bounds = np.flatnonzero(np.diff(shards[order])) + 1
    records: list[OutRecord] = []
    for group in np.split(order, bounds):
        start = 0
        while start < len(group):
            stop = min(start + per_record, len(group))
            # Fewer events when N of them would pass 1 MiB (the key is at most 256 bytes).
            while int(line_bytes[group[start:stop]].sum()) + 256 > MAX_BYTES_PER_RECORD:
                stop = start + max(1, (stop - start) // 2)
            chosen = group[start:stop]
            data = b"".join(lines.body(int(i), int(i) + 1) for i in chosen)
            records.append(OutRecord(key_list[int(chosen[0])], data, len(chosen)))
            start = stop
    return records


def _partition_keys(events: pa.Table, partition_by: PartitionBy) -> pa.Array:
    """Each event's partition key: its ip or session; its user id where that is missing."""
    column = events[partition_by.value].cast(pa.string())
    fallback = pc.cast(events["user_id"], pa.string())
    return pc.coalesce(column, fallback).combine_chunks()


def _shard_of(keys: pa.Array, shard_starts: np.ndarray | None) -> np.ndarray:
    """Each event's destination shard (an index into `shard_starts`), hashing each distinct key
    once, as Kinesis routes: the MD5 of the key as a 128-bit number, in a shard's hash range."""
    if shard_starts is None or len(shard_starts) < 2:
        return np.zeros(len(keys), dtype=np.int64)
    encoded = keys.dictionary_encode()
    hashes = [
        int(hashlib.md5(key.encode()).hexdigest(), 16) for key in encoded.dictionary.to_pylist()
    ]
    per_key = np.array(
        [int(np.searchsorted(shard_starts, h, "right")) - 1 for h in hashes], dtype=np.int64
    )
    return per_key[encoded.indices.to_numpy(zero_copy_only=False)]
