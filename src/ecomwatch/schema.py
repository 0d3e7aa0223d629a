"""The one event schema every module speaks (design principle 1).

Decoders produce `EVENT_SCHEMA`; the engine, operators, lake and analytics consume it.
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa


class EventType(StrEnum):
    VIEW = "view"
    CART = "cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)

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
INPUT_COLUMNS: tuple[str, ...] = REES46_COLUMNS + EXTRA_COLUMNS
# Columns that must be present in every input.
REQUIRED_COLUMNS: tuple[str, ...] = REES46_COLUMNS

TIME_TYPE = pa.timestamp("us", tz="UTC")
LABEL_TYPE = pa.dictionary(pa.int32(), pa.string())

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_time", TIME_TYPE, nullable=False),
        pa.field("event_type", LABEL_TYPE, nullable=False),
        pa.field("product_id", pa.int64(), nullable=False),
        pa.field("category_id", pa.int64()),
        pa.field("category_code", LABEL_TYPE),
        pa.field("brand", LABEL_TYPE),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("user_session", pa.string()),
        pa.field("ip", LABEL_TYPE),
        pa.field("user_agent", LABEL_TYPE),
        pa.field("event_id", pa.string()),
        # Identity of the event when it carries no event_id: the source (a file's fingerprint,
        # later a stream shard) and the position inside it (a file's physical line number).
        pa.field("source", LABEL_TYPE, nullable=False),
        pa.field("source_pos", pa.int64(), nullable=False),
    ]
)

EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)


def empty_events() -> pa.Table:
    """A zero-row table with the event schema."""
    return EVENT_SCHEMA.empty_table()


def dictionary_chunks(column: pa.ChunkedArray) -> list[pa.DictionaryArray]:
    """The column's chunks as dictionary arrays (label columns already are; others are
    encoded), so that work per distinct value is done once per chunk."""
    return [
        chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode()
        for chunk in column.chunks
    ]
