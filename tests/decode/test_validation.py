"""Decoder edge cases: every reject reason, repairs, time formats, blank lines, quoting."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomwatch.sources.base import Position
from ecomwatch.testing import MemorySource

HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)
GOOD = (
    "2019-11-01 00:00:00 UTC,view,1003461,2053013555631882655,electronics.smartphone,xiaomi,"
    "489.07,520088904,4d3b30da-a5e4-49df-b1a8-ba5943f1dd33"
)


def decode(text: str | bytes, chunk_bytes: int = 1 << 16):
    events, rejects = [], []
    for batch in MemorySource(text, chunk_bytes=chunk_bytes).read(Position()):
        events.append(batch.decoded.events)
        rejects.extend(batch.decoded.rejects.to_pylist())
    return pa.concat_tables(events), rejects


def test_every_reject_reason_with_line_numbers():
    rows = [
        GOOD,
        GOOD.replace("2019-11-01 00:00:00 UTC", "yesterday"),
        GOOD.replace(",view,", ",click,"),
        GOOD.replace("1003461", "abc"),
        GOOD.replace("520088904", ""),
        GOOD.replace("489.07", "-1.00"),
        GOOD.replace("489.07", "12,5"),  # an extra field
        GOOD.replace("489.07", "NaN"),
        GOOD.replace("2053013555631882655", "cat"),
        GOOD,
    ]
    events, rejects = decode("\n".join([HEADER, *rows]) + "\n")
    assert events.num_rows == 2
    assert events["source_pos"].to_pylist() == [2, 11]
    got = [(r["line"], r["reason"]) for r in rejects]
    assert got == [
        (3, "bad_event_time"),
        (4, "unknown_event_type"),
        (5, "bad_product_id"),
        (6, "bad_user_id"),
        (7, "negative_price"),
        (8, "wrong_field_count"),
        (9, "bad_price"),
        (10, "bad_category_id"),
    ]
    assert all(r["source"] == "memory:mem" and r["raw"] for r in rejects)
    assert "yesterday" in rejects[0]["detail"]


def test_invalid_utf8_is_rejected_and_the_rest_kept():
    bad = GOOD.replace("xiaomi", "xia\xffomi").encode("latin-1")
    text = (HEADER + "\n" + GOOD + "\n").encode() + bad + b"\n" + GOOD.encode() + b"\n"
    events, rejects = decode(text)
    assert events.num_rows == 2
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "invalid_utf8")]
    assert "\\xff" in rejects[0]["raw"]


def test_iso_times_with_z_and_offsets_are_accepted():
    rows = [
        GOOD,
        GOOD.replace("2019-11-01 00:00:00 UTC", "2019-11-01T00:00:00Z"),
        GOOD.replace("2019-11-01 00:00:00 UTC", "2019-11-01T02:00:00+02:00"),
        GOOD.replace("2019-11-01 00:00:00 UTC", "2019-11-01T00:00:00.250Z"),
    ]
    events, rejects = decode("\n".join([HEADER, *rows]) + "\n")
    assert rejects == []
    times = events["event_time"].to_pylist()
    midnight = datetime(2019, 11, 1, tzinfo=UTC)
    assert times[:3] == [midnight] * 3
    assert times[3] == midnight.replace(microsecond=250_000)


def test_blank_lines_are_not_rows_and_keep_numbering():
    text = HEADER + "\n" + GOOD + "\n\n" + GOOD + "\r\n\r\n" + GOOD + "\n"
    events, rejects = decode(text)
    assert rejects == []
    assert events["source_pos"].to_pylist() == [2, 4, 6]


def test_quoted_fields_with_commas():
    row = GOOD.replace("xiaomi", '"xiaomi, inc"')
    events, rejects = decode(HEADER + "\n" + row + "\n")
    assert rejects == []
    assert events["brand"].cast(pa.string()).to_pylist() == ["xiaomi, inc"]


def test_integral_float_ids_accepted_non_integral_rejected():
    rows = [
        GOOD.replace("1003461", "1003461.0"),
        GOOD.replace("1003461", "1003461.5"),
        GOOD.replace("520088904", "5.20088904e8"),
    ]
    events, rejects = decode("\n".join([HEADER, *rows]) + "\n")
    assert events["product_id"].to_pylist() == [1003461, 1003461]
    assert events["user_id"].to_pylist() == [520088904, 520088904]
    assert [r["reason"] for r in rejects] == ["bad_product_id"]


def test_signed_and_space_padded_numbers_are_read():
    """A '+' sign or spaces around a number once made Arrow's cast raise, which stopped the
    whole file instead of reading (or rejecting) one row."""
    rows = [
        GOOD.replace("1003461", "+5"),
        GOOD.replace("489.07", " 2.5"),
        GOOD.replace("520088904", " 7 "),
        GOOD.replace("1003461", " 5.0"),
        GOOD.replace("489.07", "  "),
    ]
    events, rejects = decode("\n".join([HEADER, *rows]) + "\n")
    assert events["product_id"].to_pylist() == [5, 1003461, 1003461, 5]
    assert events["price"].to_pylist() == [489.07, 2.5, 489.07, 489.07]
    assert events["user_id"].to_pylist() == [520088904, 520088904, 7, 520088904]
    assert [(r["line"], r["reason"]) for r in rejects] == [(6, "bad_price")]


def test_empty_optional_fields_become_null():
    row = "2019-11-01 00:00:00 UTC,cart,1,,,,0.00,7,"
    events, rejects = decode(HEADER + "\n" + row + "\n")
    assert rejects == []
    record = events.to_pylist()[0]
    assert record["category_id"] is None
    assert record["category_code"] is None
    assert record["brand"] is None
    assert record["user_session"] is None
    assert record["price"] == 0.0


# Properties ---------------------------------------------------------------------------------

fields = st.sampled_from(
    [
        "2019-11-01 00:00:00 UTC",
        "2019-11-01T00:00:00Z",
        "bogus",
        "",
        "view",
        "purchase",
        "cart",
        "1",
        "-3",
        "1.5",
        "2053013555631882655",
        "1.4875800092865987e+18",
        '"a,b"',
        "x\xe9",
        "9.99",
    ]
)
row = st.lists(fields, min_size=1, max_size=12).map(",".join)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(row, max_size=40), chunk=st.integers(64, 4096))
def test_decoder_never_loses_a_row(rows, chunk):
    """read = accepted + rejected, whatever the rows and however the text is chunked."""
    text = HEADER + "\n" + "\n".join(rows) + ("\n" if rows else "")
    events, rejects = decode(text, chunk_bytes=chunk)
    non_blank = [r for r in rows if r != ""]
    assert events.num_rows + len(rejects) == len(non_blank)
    positions = events["source_pos"].to_pylist() + [r["line"] for r in rejects]
    assert len(set(positions)) == len(positions)
    expected_lines = [i + 2 for i, r in enumerate(rows) if r != ""]
    assert sorted(positions) == expected_lines
