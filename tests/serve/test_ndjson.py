"""Replay's NDJSON bodies: whatever the events hold (quotes, control characters, any Unicode,
any float, IDs near 2^63, microseconds or not, missing values), the collector reads back exactly
the events that were encoded, from a body of any slice of a block."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomwatch.decode.json_rows import read_ndjson_table
from ecomwatch.decode.url_map import load_url_map
from ecomwatch.decode.web_logs import WebLogOptions
from ecomwatch.schema import EVENT_SCHEMA
from ecomwatch.serve.collector import Limits, Numbering, decode_body
from ecomwatch.serve.ndjson import SENT_COLUMNS, encode_lines
from ecomwatch.sources.base import Position
from ecomwatch.sources.files import FileSource

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
EVENT = st.fixed_dictionaries(
    {
        "event_time": st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
        ),
        "event_type": st.sampled_from(["view", "cart", "remove_from_cart", "purchase"]),
        "product_id": st.integers(0, 2**63 - 1),
        "category_id": st.none() | st.integers(0, 2**63 - 1),
        "category_code": st.none() | TEXT,
        "brand": st.none() | TEXT,
        "price": st.floats(0, 1e12, allow_nan=False, allow_infinity=False),
        "user_id": st.integers(0, 2**63 - 1),
        "user_session": st.none() | TEXT,
        "ip": st.none() | st.ip_addresses().map(str),
        "user_agent": st.none() | TEXT,
        "event_id": st.none() | TEXT,
    }
)


def as_table(rows: list[dict]) -> pa.Table:
    schema = pa.schema([EVENT_SCHEMA.field(name) for name in SENT_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)


def collected(body: bytes) -> list[dict]:
    decoded = decode_body(
        body, encoding=None, limits=Limits(), numbering=Numbering(),
        source_id="http-test", request_id="r1",
    )  # fmt: skip
    assert decoded.rejects.num_rows == 0, decoded.rejects.to_pylist()
    return decoded.events.select(list(SENT_COLUMNS)).to_pylist()


@settings(max_examples=60, deadline=None)
@given(st.lists(EVENT, min_size=1, max_size=20), st.data())
def test_the_collector_reads_back_exactly_the_encoded_events(rows, data):
    table = as_table(rows)
    lines = encode_lines(table)
    assert len(lines) == len(rows)
    start = data.draw(st.integers(0, len(rows) - 1))
    stop = data.draw(st.integers(start + 1, len(rows)))
    body = lines.body(start, stop)
    assert body.count(b"\n") == stop - start
    assert collected(body) == as_table(rows[start:stop]).to_pylist()
    assert list(lines.times_us[start:stop]) == [
        (r["event_time"] - EPOCH) // timedelta(microseconds=1) for r in rows[start:stop]
    ]


def test_well_typed_events_take_the_collectors_columnar_path_and_empty_columns_are_left_out():
    rows = [
        {"event_time": datetime(2019, 11, 1, 10, 0, i, tzinfo=UTC), "event_type": "view",
         "product_id": i, "category_id": None, "category_code": 'say "hi"\n', "brand": None,
         "price": 0.1 + 0.2, "user_id": 7, "user_session": "s", "ip": "198.51.100.7",
         "user_agent": "Mozilla/5.0", "event_id": None}
        for i in range(3)
    ]  # fmt: skip
    body = encode_lines(as_table(rows)).body(0, 3)
    assert b"event_id" not in body and b"category_id" not in body
    assert b'"event_time":"2019-11-01T10:00:01Z"' in body  # whole seconds: no fraction sent
    assert read_ndjson_table(body) is not None
    assert collected(body) == as_table(rows).to_pylist()


REPO = Path(__file__).resolve().parents[2]
SCAN_LOG = (
    REPO.parent
    / "shared/data/accesslogs"
    / ("scan_attack_2024__AgungBahtiarr_webserver_attack_clasification_access.log")
)


@pytest.mark.parametrize(
    ("log", "url_map"),
    [(REPO / "examples/rules/web-attacks.log", "woocommerce"), (SCAN_LOG, None)],
    ids=["fixture-log-mapped", "real-scan-log"],
)
def test_a_web_logs_events_cross_the_collector_unchanged(log: Path, url_map: str | None) -> None:
    """What `replay access.log` sends: requests (no product, user or price) and the views and
    carts a URL map found, with their web columns; the collector reads back the same events."""
    if not log.is_file():
        pytest.skip(f"{log} is not on this machine")
    web = WebLogOptions(url_map=load_url_map(url_map) if url_map else None)
    source = FileSource(log, web=web)
    events = pa.concat_tables(
        [b.decoded.events for b in source.read(Position()) if b.decoded.events.num_rows]
    )
    assert events.num_rows > 600
    kinds = set(events["event_type"].to_pylist())
    assert "request" in kinds and (url_map is None or "view" in kinds)
    sent = events.select(list(SENT_COLUMNS))
    assert collected(encode_lines(sent).body(0, events.num_rows)) == sent.to_pylist()


def test_a_request_without_a_status_is_refused_with_why() -> None:
    body = b'{"event_time": "2026-11-30T10:00:00Z", "event_type": "request", "ip": "1.2.3.4"}\n'
    body += b'{"event_time": "2026-11-30T10:00:00Z", "event_type": "request", "status": 200}\n'
    decoded = decode_body(
        body, encoding=None, limits=Limits(), numbering=Numbering(),
        source_id="http-test", request_id="r1",
    )  # fmt: skip
    assert decoded.events.num_rows == 1
    assert decoded.rejects.to_pylist()[0]["reason"] == "bad_web_field"
