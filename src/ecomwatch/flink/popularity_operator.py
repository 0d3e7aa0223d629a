"""The Flink job's product popularity: each event's `popularity` column, for the rules that
read the long-tail features. Shipped beside `job.py` by `ecomwatch flink compile` (with
`product_popularity.py`, the embedded detector's own class); it runs in Flink's Python
environment, not ecomwatch's.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa
from product_popularity import ProductPopularity  # shipped beside this file
from pyflink.common import Row, Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor
from pyflink.table import Schema, StreamTableEnvironment

GROUP_S = 60  # rows are counted a minute of event time at a time


def ip_key(ip: str | None) -> int:
    """A number standing for an address (0 for none): popularity counts an address's views as
    one visitor's; any one-to-one numbering does (the embedded engine numbers IPv4 itself)."""
    if not ip:
        return 0
    return int.from_bytes(hashlib.blake2b(ip.encode(), digest_size=8).digest(), "little")


class Popularity(KeyedProcessFunction):  # type: ignore[misc]
    """Each event's product popularity (`product_popularity`, the embedded detector's own
    class), for the whole shop: one subtask counts every view.

    The counts depend on the order events come in, so rows are keyed by their minute of event
    time and wait in that key's list state until the watermark passes the minute; then they are
    counted together in time order (timers fire in time order across keys): which subtask read
    a row first, and how the sources interleaved, changes nothing. The counts themselves live in
    the operator, not in Flink state: after a restore they start again, and the long-tail
    features stay unknown (null) for an hour of views, as on a new embedded detector."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.waiting = runtime_context.get_list_state(
            ListStateDescriptor("waiting", Types.PICKLED_BYTE_ARRAY())
        )
        self.memory = ProductPopularity()

    def process_element(self, row: Any, ctx: Any) -> Any:
        self.waiting.add(row)
        minute_ends_ms = (ctx.get_current_key() + 1) * GROUP_S * 1000 - 1
        ctx.timer_service().register_event_time_timer(minute_ends_ms)
        yield from ()

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        rows = sorted(self.waiting.get() or [], key=lambda row: row["t_s"])
        self.waiting.clear()
        if not rows:
            return
        counted = [row["event_type"] == "view" and row["agent_code"] == 0 for row in rows]
        popularity = self.memory.popularity(
            pa.array([row["product_id"] for row in rows], pa.int64()),
            pa.array([row["t_s"] * 1_000_000 for row in rows], pa.int64()),
            pa.array([ip_key(row["ip"]) for row in rows], pa.uint64()),
            pa.array(counted, pa.bool_()),
        ).to_pylist()
        for row, value in zip(rows, popularity, strict=True):
            yield Row(*row, value)


def _type_info(data_type: Any) -> Any:
    """The DataStream type of a base view column's SQL type."""
    kinds = {
        "VarCharType": Types.STRING,
        "BigIntType": Types.LONG,
        "IntType": Types.INT,
        "DoubleType": Types.DOUBLE,
        "TimestampType": Types.SQL_TIMESTAMP,
    }
    return kinds[type(data_type).__name__]()


def with_popularity(tables: StreamTableEnvironment, spec: dict[str, Any]) -> None:
    """Register `spec["popularity"]["table"]`: the base view's rows with their `popularity`
    (`Popularity`), their event time again a time attribute (`rowtime`) with the source's
    watermark (its lateness)."""
    names = spec["popularity"]
    base = tables.from_path(names["view"])
    schema = base.get_schema()
    typed = Types.ROW_NAMED(
        [*schema.get_field_names(), "popularity"],
        [*(_type_info(t) for t in schema.get_field_data_types()), Types.DOUBLE()],
    )
    rows = tables.to_data_stream(base)
    popular = (
        rows.key_by(lambda row: row["t_s"] // GROUP_S, key_type=Types.LONG())
        .process(Popularity(), output_type=typed)
        .set_parallelism(1)
    )
    timed = (
        Schema.new_builder()
        .column_by_expression("rowtime", "CAST(event_time AS TIMESTAMP(3))")
        .watermark("rowtime", names["watermark"])
        .build()
    )
    tables.create_temporary_view(names["table"], tables.from_data_stream(popular, timed))
