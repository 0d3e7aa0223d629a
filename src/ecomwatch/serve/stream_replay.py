"""`ecomwatch replay FILE... --to kinesis://STREAM`: files into a stream at a chosen pace.

Rows are read through the same decoders as `ecomwatch run` (rejected rows are not sent), cut
into slices of one PutRecords call's worth, packed into records (`sinks.kinesis_producer`) and
sent. `rate` paces by events per second, `speed` by event time; neither: as fast as the stream
takes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc

from ecomwatch.config import Config
from ecomwatch.serve.replay import event_blocks, sleep_until
from ecomwatch.sinks.kinesis_producer import (
    MAX_RECORDS_PER_CALL,
    KinesisProducer,
    PartitionBy,
    PutStats,
    in_calls,
    pack_records,
)
from ecomwatch.sources.kinesis_api import StreamRef


def replay_to_stream(
    paths: list[Path],
    stream: StreamRef | str,
    *,
    rate: float | None = None,
    speed: float | None = None,
    per_record: int = 1,
    partition_by: PartitionBy = PartitionBy.IP,
    client: Any = None,
    on_progress: Callable[[int], None] | None = None,
    config: Config | None = None,
) -> PutStats:
    producer = KinesisProducer(stream, client=client)
    starts = producer.shard_ranges() if per_record > 1 else None
    con = duckdb.connect()
    # Paced, the slices are small enough to keep the pace (a fifth of a second of events, or
    # ten records); unpaced, a full PutRecords call each.
    slice_rows = MAX_RECORDS_PER_CALL * per_record
    if rate:
        slice_rows = max(per_record, min(slice_rows, int(rate / 5)))
    elif speed:
        slice_rows = 10 * per_record
    started = time.perf_counter()
    first_us: int | None = None
    queued = 0
    for block in event_blocks(paths, config):
        for offset in range(0, block.num_rows, slice_rows):
            part = block.slice(offset, slice_rows)
            earliest = int(pc.min(part["event_time"]).cast("int64").as_py())
            first_us = earliest if first_us is None else first_us
            if rate:
                sleep_until(started + queued / rate)
            elif speed:
                sleep_until(started + (earliest - first_us) / 1e6 / speed)
            records = pack_records(
                part, partition_by=partition_by, per_record=per_record, shard_starts=starts, con=con
            )
            for call in in_calls(records):
                producer.put_call(call)
            queued += part.num_rows
            if on_progress:
                on_progress(part.num_rows)
    producer.stats.seconds = time.perf_counter() - started
    return producer.stats
