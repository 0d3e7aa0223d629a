"""Rejected rows: why a row was refused, and the dead-letter record it becomes."""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa


class RejectReason(StrEnum):
    WRONG_FIELD_COUNT = "wrong_field_count"
    INVALID_UTF8 = "invalid_utf8"
    BAD_EVENT_TIME = "bad_event_time"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    BAD_PRODUCT_ID = "bad_product_id"
    BAD_CATEGORY_ID = "bad_category_id"
    BAD_USER_ID = "bad_user_id"
    BAD_PRICE = "bad_price"
    NEGATIVE_PRICE = "negative_price"
    BAD_JSON = "bad_json"
    # A web access log line of no known shape, or with a status or size that is not a number.
    BAD_LOG_LINE = "bad_log_line"
    # A web request sent as an event (JSON, CSV) whose status or size is not a number.
    BAD_WEB_FIELD = "bad_web_field"
    # A stream record as a whole: damaged gzip, a KPL record whose digest does not match.
    UNDECODABLE_RECORD = "undecodable_record"


REJECT_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ]
)


def rejects_table(
    source: str | list[str],
    lines: list[int],
    reasons: list[str],
    details: list[str],
    raws: list[str],
) -> pa.Table:
    """Rejected rows of one source (a name) or of several (a name per row)."""
    sources = [source] * len(lines) if isinstance(source, str) else source
    return pa.table(
        {
            "source": pa.array(sources, pa.string()),
            "line": pa.array(lines, pa.int64()),
            "reason": pa.array(reasons, pa.string()),
            "detail": pa.array(details, pa.string()),
            "raw": pa.array(raws, pa.string()),
        },
        schema=REJECT_SCHEMA,
    )


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()
