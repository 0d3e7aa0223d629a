"""An Amazon Kinesis stream as a source: every shard, one consumer, exactly-once checkpoints.

Each round polls every shard that is due, on a small thread pool (the calls wait on the
network), decodes what came back shard by shard and yields it as one batch whose position
holds, for every shard, the last sequence number consumed, whether the shard is finished, and
its counts. The engine commits that position with the lake data and operator state, so a
restart continues `AFTER_SEQUENCE_NUMBER` each shard's checkpoint: nothing lost, nothing
doubled. A record is only ever consumed whole (all of an aggregated record's sub-records in
one batch), so a checkpoint never falls inside one.

Resharding: a shard is read only once its parents are finished (a null `NextShardIterator`, or
a closed shard read to its end), so the events of one partition key stay in order; shards that
appear later are read from their start. The shard list is read again when a shard finishes and
every `list_interval_s`.

Polling stays within the service's limits: at most one GetRecords per `poll_interval_s` per
shard (5 per second by default, the service's limit), `Limit` ≤ 10,000 records and sized so
that one call carries about `target_events` events; a shard at its tip is polled again after
`idle_poll_s`. While every shard is quiet the source yields empty batches, so the engine's
clock, watermark and commits go on. An expired iterator (they last 5 minutes) is replaced by
one `AFTER_SEQUENCE_NUMBER` the last record read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import botocore.exceptions
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.decode.stream_records import StreamRecord, decode_stream_records
from ecomwatch.decode.validate import Decoded, empty_decoded, merge_decoded
from ecomwatch.sources.base import Position, SourceBatch, SourceError
from ecomwatch.sources.kinesis_api import KinesisCalls, StreamRef, kinesis_client

MAX_LIMIT = 10_000  # GetRecords' largest Limit


class StartKind(StrEnum):
    TRIM_HORIZON = "trim-horizon"
    LATEST = "latest"
    AT_TIMESTAMP = "at-timestamp"


@dataclass(frozen=True)
class StartAt:
    """Where a stream never read before is read from (`--from`)."""

    kind: StartKind = StartKind.TRIM_HORIZON
    timestamp: float | None = None  # epoch seconds, for AT_TIMESTAMP

    @classmethod
    def parse(cls, text: str) -> StartAt:
        value = text.strip().lower()
        if value in (StartKind.TRIM_HORIZON, "trim_horizon"):
            return cls(StartKind.TRIM_HORIZON)
        if value == StartKind.LATEST:
            return cls(StartKind.LATEST)
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(
                f"--from {text!r}: use trim-horizon, latest or a time such as 2026-12-01T10:00:00Z"
            ) from exc
        if moment.tzinfo is None:
            raise ValueError(f"--from {text!r}: give the time zone (e.g. Z for UTC)")
        return cls(StartKind.AT_TIMESTAMP, moment.timestamp())

    def resolved(self, now: float) -> StartAt:
        """LATEST becomes "from now on", so that a restart before the first checkpoint of
        records read does not skip them."""
        return StartAt(StartKind.AT_TIMESTAMP, now) if self.kind is StartKind.LATEST else self

    def iterator_args(self) -> dict[str, Any]:
        if self.kind is StartKind.AT_TIMESTAMP:
            return {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": self.timestamp}
        if self.kind is StartKind.LATEST:
            return {"ShardIteratorType": "LATEST"}
        return {"ShardIteratorType": "TRIM_HORIZON"}

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "timestamp": self.timestamp}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StartAt:
        return cls(StartKind(data["kind"]), data.get("timestamp"))


@dataclass(frozen=True)
class PollSettings:
    poll_interval_s: float = 0.2  # per shard: the service allows 5 GetRecords per second
    idle_poll_s: float = 1.0  # a shard at its tip waits this long before its next poll
    list_interval_s: float = 60.0
    target_events: int = 50_000  # per GetRecords call (about the service's 10 MB a call)
    threads: int = 8
    retry_for_s: float = 300.0
    behind_ms: int = 5_000  # "behind" (detection judges less often) past this lag


@dataclass
class ShardState:
    """One shard's place (checkpointed) and its polling state (not)."""

    shard_id: str
    parents: list[str] = field(default_factory=list)
    sequence: str | None = None  # the last record consumed
    finished: bool = False
    read: int = 0
    accepted: int = 0
    rejected: int = 0
    millis_behind: int | None = None
    max_event_us: int | None = None  # the latest event time read from the shard
    from_start: bool = False  # a shard found after the first listing: read from its start
    # not checkpointed:
    iterator: str | None = None
    closed: bool = False  # the listing gives it an ending sequence number
    due_at: float = 0.0
    caught_up: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "parents": self.parents,
            "sequence": self.sequence,
            "finished": self.finished,
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "millis_behind": self.millis_behind,
            "max_event_us": self.max_event_us,
            "from_start": self.from_start,
        }

    @classmethod
    def from_json(cls, shard_id: str, data: dict[str, Any]) -> ShardState:
        return cls(
            shard_id,
            list(data.get("parents", [])),
            data.get("sequence"),
            bool(data.get("finished")),
            int(data.get("read", 0)),
            int(data.get("accepted", 0)),
            int(data.get("rejected", 0)),
            data.get("millis_behind"),
            data.get("max_event_us"),
            bool(data.get("from_start")),
        )


@dataclass(frozen=True)
class _Fetched:
    shard: ShardState
    records: list[dict[str, Any]]
    next_iterator: str | None
    millis_behind: int | None


class KinesisSource:
    """Every shard of one stream; `read(position)` resumes each where the checkpoint left it."""

    def __init__(
        self,
        stream: StreamRef | str,
        *,
        start: StartAt | None = None,
        until_caught_up: bool = False,
        settings: PollSettings | None = None,
        client: Any = None,
    ) -> None:
        self.stream = StreamRef.parse(stream) if isinstance(stream, str) else stream
        self.name = self.stream.uri
        self.source_id = f"kinesis:{self.stream.name}"
        self.size = 0
        self.start = start or StartAt()
        self.until_caught_up = until_caught_up
        self.settings = settings or PollSettings()
        self.calls = KinesisCalls(
            client if client is not None else kinesis_client(self.stream),
            self.stream,
            retry_for_s=self.settings.retry_for_s,
        )
        self.shards: dict[str, ShardState] = {}
        self._stop = threading.Event()
        self._closing = threading.Event()  # set by stop() and when read() ends
        # Until the first records tell, assume records as packed as shops pack them, so that
        # the first call of a stream of large records is not huge.
        self._events_per_record = 500.0
        self._listed_at = 0.0

    # control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """End `read` after the batch in hand (SIGTERM): the engine then commits and exits."""
        self._stop.set()
        self._closing.set()

    def lag_ms(self) -> dict[str, int]:
        """MillisBehindLatest of every open shard, as last read."""
        return {
            s.shard_id: s.millis_behind
            for s in list(self.shards.values())
            if not s.finished and s.millis_behind is not None
        }

    def behind(self) -> bool:
        return any(lag > self.settings.behind_ms for lag in self.lag_ms().values())

    # reading ---------------------------------------------------------------------------

    def read(self, start: Position) -> Iterator[SourceBatch]:
        cursor = start.cursor or {}
        self.shards = {
            shard_id: ShardState.from_json(shard_id, data)
            for shard_id, data in cursor.get("shards", {}).items()
        }
        begin = (
            StartAt.from_json(cursor["start"])
            if "start" in cursor
            else self.start.resolved(time.time())
        )
        self._closing.clear()
        self._list_shards(first=not self.shards)
        pool = ThreadPoolExecutor(self.settings.threads, thread_name_prefix="kinesis")
        # One GetRecords in flight per shard, taken as soon as its turn comes: the next calls
        # wait on the network while the engine works on the batch in hand.
        inflight: dict[str, Future[_Fetched | None]] = {}
        try:
            while not self._stop.is_set():
                for shard in self._ready():
                    if shard.shard_id not in inflight:
                        inflight[shard.shard_id] = pool.submit(self._fetch_when_due, shard, begin)
                if not inflight and self.until_caught_up and self._caught_up():
                    return
                done: set[Future[_Fetched | None]] = set()
                if inflight:
                    waiting = list(inflight.values())
                    done = wait(waiting, self.settings.idle_poll_s, FIRST_COMPLETED).done
                else:  # every shard finished or waiting for its parents: an idle tick
                    self._stop.wait(self.settings.idle_poll_s)
                fetched = []
                for shard_id, future in list(inflight.items()):
                    if future in done:
                        del inflight[shard_id]
                        result = future.result()
                        if result is not None:
                            fetched.append(result)
                decoded = self._consume(fetched) if fetched else empty_decoded()
                if (
                    any(f.shard.finished for f in fetched)
                    or time.monotonic() - self._listed_at >= self.settings.list_interval_s
                ):
                    self._list_shards(first=False)
                yield SourceBatch(decoded, self._position(begin), 0, self._event_time_bound())
                if self.until_caught_up and fetched and self._caught_up():
                    return
        finally:
            self._closing.set()  # calls waiting for their turn give up
            pool.shutdown(wait=True, cancel_futures=True)

    def _event_time_bound(self) -> int | None:
        """The latest event time of the shard furthest behind, among those with more to read:
        the watermark may not pass it, or that shard's next records would all be late (a
        per-shard watermark, as Flink's sources keep per split). Shards at their tip do not
        hold it back; one with more to read but none read yet holds it where it is (0)."""
        behind = [
            s.max_event_us
            for s in self.shards.values()
            if not s.finished and not s.caught_up and self._parents_finished(s)
        ]
        if not behind:
            return None
        return 0 if None in behind else min(b for b in behind if b is not None)

    def _position(self, begin: StartAt) -> Position:
        return Position(
            cursor={
                "stream": self.stream.name,
                "start": begin.to_json(),
                "shards": {i: s.to_json() for i, s in sorted(self.shards.items())},
            }
        )

    def _list_shards(self, *, first: bool) -> None:
        """Learn new shards (and which are closed); forget nothing that is checkpointed."""
        listed = self.calls.list_shards()
        self._listed_at = time.monotonic()
        present = {shard["ShardId"] for shard in listed}
        for shard in listed:
            state = self.shards.get(shard["ShardId"])
            if state is None:
                parents = [
                    shard[key]
                    for key in ("ParentShardId", "AdjacentParentShardId")
                    if shard.get(key)
                ]
                state = ShardState(shard["ShardId"], parents, from_start=not first)
                self.shards[state.shard_id] = state
            state.closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
        for state in self.shards.values():
            if state.shard_id not in present and not state.finished:
                state.finished = True  # trimmed past the retention period: nothing left

    def _ready(self) -> list[ShardState]:
        """Shards that may be read: open, and their parents finished."""
        return [s for s in self.shards.values() if not s.finished and self._parents_finished(s)]

    def _parents_finished(self, shard: ShardState) -> bool:
        return all(
            parent not in self.shards or self.shards[parent].finished for parent in shard.parents
        )

    def _caught_up(self) -> bool:
        """Every shard read to its tip (or finished), even after listing the shards again."""

        def done() -> bool:
            return all(s.finished or s.caught_up for s in self.shards.values())

        if not done():
            return False
        known = set(self.shards)
        self._list_shards(first=False)
        return done() and set(self.shards) == known

    def _iterator(self, shard: ShardState, begin: StartAt) -> str | None:
        if shard.sequence is not None:
            args: dict[str, Any] = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": shard.sequence,
            }
        elif shard.from_start:
            args = {"ShardIteratorType": "TRIM_HORIZON"}
        else:
            args = begin.iterator_args()
        response = self.calls("get_shard_iterator", ShardId=shard.shard_id, **args)
        return response.get("ShardIterator")

    def _limit(self) -> int:
        return max(1, min(MAX_LIMIT, int(self.settings.target_events / self._events_per_record)))

    def _fetch_when_due(self, shard: ShardState, begin: StartAt) -> _Fetched | None:
        """`_fetch` once the shard's turn comes; None when the source stops meanwhile."""
        if self._closing.wait(max(0.0, shard.due_at - time.monotonic())):
            return None
        return self._fetch(shard, begin)

    def _fetch(self, shard: ShardState, begin: StartAt) -> _Fetched:
        """One GetRecords of `shard` (a new iterator first, when it has none or it expired)."""
        for _ in range(3):
            if shard.iterator is None:
                shard.iterator = self._iterator(shard, begin)
                if shard.iterator is None:
                    return _Fetched(shard, [], None, 0)
            limit = self._limit()
            try:
                response = self.calls(
                    "get_records", name_stream=False, ShardIterator=shard.iterator, Limit=limit
                )
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                    raise
                self.calls.retries.add("ExpiredIteratorException")
                shard.iterator = None
                continue
            return _Fetched(
                shard,
                response.get("Records", []),
                response.get("NextShardIterator"),
                response.get("MillisBehindLatest"),
            )
        raise SourceError(self.name, f"{shard.shard_id}: new iterators kept expiring at once")

    def _consume(self, fetched: list[_Fetched]) -> Decoded:
        """Decode each shard's records and move its place on; one batch for the round."""
        now = time.monotonic()
        parts: list[Decoded] = []
        records_seen = events_seen = 0
        for item in fetched:
            shard = item.shard
            records = [
                StreamRecord(f"{self.source_id}/{shard.shard_id}/{r['SequenceNumber']}", r["Data"])
                for r in item.records
            ]
            decoded = decode_stream_records(records)
            if records:
                parts.append(decoded)
                if decoded.events.num_rows:
                    latest = int(pc.max(decoded.events["event_time"]).cast(pa.int64()).as_py())
                    shard.max_event_us = max(shard.max_event_us or latest, latest)
                shard.sequence = item.records[-1]["SequenceNumber"]
                shard.read += decoded.read
                shard.accepted += decoded.events.num_rows
                shard.rejected += decoded.rejects.num_rows
                records_seen += len(records)
                events_seen += decoded.read
            shard.millis_behind = item.millis_behind
            shard.iterator = item.next_iterator
            # At the tip: nothing more to read and nothing behind (a response with fewer records
            # than asked for is not enough: servers cap a response's bytes too).
            at_tip = not records and not item.millis_behind
            shard.caught_up = at_tip
            if item.next_iterator is None or (shard.closed and at_tip):
                shard.finished = True  # a closed shard read to its end
                shard.caught_up = True
            shard.due_at = now + (
                self.settings.idle_poll_s if at_tip else self.settings.poll_interval_s
            )
        if records_seen:
            self._events_per_record = max(1.0, events_seen / records_seen)
        return merge_decoded(parts)
