"""The one event schema every module speaks (design principle 1).

Decoders produce `EVENT_SCHEMA`; the engine, operators, lake and analytics consume it.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pyarrow as pa


class EventType(StrEnum):
    VIEW = "view"
    CART = "cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"
    # A web request that is none of the above (a web log's other lines: pages, assets, probes).
    REQUEST = "request"


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
# What a shop's own events (REES46 rows, the collector) may be.
COMMERCE_TYPES: tuple[str, ...] = EVENT_TYPES[:4]

# The nine REES46 columns, in the order of the published files (used for files without a header).
REES46_COLUMNS: tuple[str, ...] = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
# Optional columns a site may add.
EXTRA_COLUMNS: tuple[str, ...] = ("ip", "user_agent", "event_id")
# A web request's columns (a web log's, or sent as JSON by `replay` of a web log).
WEB_COLUMNS: tuple[str, ...] = (
    "host", "method", "path", "query", "status", "bytes", "referrer", "request_kind"
)  # fmt: skip
INPUT_COLUMNS: tuple[str, ...] = REES46_COLUMNS + EXTRA_COLUMNS + WEB_COLUMNS
# Columns that must be present in every input.
REQUIRED_COLUMNS: tuple[str, ...] = REES46_COLUMNS

TIME_TYPE = pa.timestamp("us", tz="UTC")
LABEL_TYPE = pa.dictionary(pa.int32(), pa.string())

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_time", TIME_TYPE, nullable=False),
        pa.field("event_type", LABEL_TYPE, nullable=False),
        pa.field("product_id", pa.int64()),  # null: a web request about no product
        pa.field("category_id", pa.int64()),
        pa.field("category_code", LABEL_TYPE),
        pa.field("brand", LABEL_TYPE),
        pa.field("price", pa.float64()),
        pa.field("user_id", pa.int64()),  # null: a web log knows no user
        pa.field("user_session", pa.string()),
        pa.field("ip", LABEL_TYPE),
        pa.field("user_agent", LABEL_TYPE),
        pa.field("event_id", pa.string()),
        # Identity of the event when it carries no event_id: the source (a file's fingerprint,
        # later a stream shard) and the position inside it (a file's physical line number).
        pa.field("source", LABEL_TYPE, nullable=False),
        pa.field("source_pos", pa.int64(), nullable=False),
        # A web log's request (decode/access_log.py); null for a shop's own events.
        pa.field("host", LABEL_TYPE),
        pa.field("method", LABEL_TYPE),
        pa.field("path", pa.string()),
        pa.field("query", pa.string()),
        pa.field("status", pa.int16()),
        pa.field("bytes", pa.int64()),
        pa.field("referrer", pa.string()),
        pa.field("request_kind", LABEL_TYPE),  # page, static, api or other
    ]
)

EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)


def constant(value: str, n: int) -> pa.DictionaryArray:
    """n copies of one string, stored once."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))


def conform(array: pa.Array, type_: pa.DataType) -> pa.Array:
    """A column as the schema's type (a label column dictionary-encoded)."""
    if type_ == LABEL_TYPE:
        if pa.types.is_dictionary(array.type):
            return array.cast(LABEL_TYPE)
        return array.cast(pa.string()).dictionary_encode().cast(LABEL_TYPE)
    return array.cast(type_)


def as_events(table: pa.Table) -> pa.Table:
    """A table of events as EVENT_SCHEMA: its columns in order and cast, the nullable columns
    it lacks (the web columns of a shop's own events) added as nulls."""
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in EVENT_SCHEMA
    ]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA)


def empty_events() -> pa.Table:
    """A zero-row table with the event schema."""
    return EVENT_SCHEMA.empty_table()


def one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The column as one array: a chunked one's chunks combined."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def dictionary_chunks(column: pa.ChunkedArray) -> list[pa.DictionaryArray]:
    """The column's chunks as dictionary arrays (label columns already are; others are
    encoded), so that work per distinct value is done once per chunk."""
    return [
        chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode()
        for chunk in column.chunks
    ]
