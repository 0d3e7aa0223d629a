"""Collector bodies: the columnar NDJSON path and the row-by-row path give the same events and
the same rejects (by index), and any body the fast path cannot type falls back, losing nothing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomwatch.decode.json_rows import read_ndjson_table
from ecomwatch.serve.collector import BodyError, Limits, Numbering, decode_body
from tests.serve.test_collector_api import event


def decode(body: bytes, limits: Limits | None = None):
    return decode_body(
        body, encoding=None, limits=limits or Limits(), numbering=Numbering(),
        source_id="http-test", request_id="r1",
    )  # fmt: skip


def ndjson(rows: list) -> bytes:
    return b"\n".join(json.dumps(r).encode() for r in rows)


def comparable(decoded):
    rejects = [(r["line"], r["reason"]) for r in decoded.rejects.to_pylist()]
    return decoded.events.to_pylist(), rejects


def test_well_typed_ndjson_takes_the_fast_path_with_the_same_result():
    rows = [event(i) for i in range(20)] + [{**event(20), "event_type": "teleport"}]
    assert read_ndjson_table(ndjson(rows)) is not None
    fast, slow = decode(ndjson(rows)), decode(json.dumps(rows).encode())
    assert comparable(fast) == comparable(slow)
    assert fast.events.num_rows == 20 and fast.rejects["line"].to_pylist() == [20]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.sampled_from(["ok", "string_id", "not_json", "bad_type", "list", "no_price"]),
        min_size=1,
        max_size=12,
    )
)
def test_any_mix_of_rows_gives_the_row_by_row_answer(kinds):
    rows: list = []
    for i, kind in enumerate(kinds):
        row = event(i)
        if kind == "string_id":
            row["product_id"] = str(row["product_id"])
        elif kind == "bad_type":
            row["event_type"] = "teleport"
        elif kind == "no_price":
            del row["price"]
        rows.append("{not json" if kind == "not_json" else [1] if kind == "list" else row)
    body = b"\n".join(r.encode() if isinstance(r, str) else json.dumps(r).encode() for r in rows)
    as_lines = decode(body)
    one_by_one = [
        decode(r.encode() if isinstance(r, str) else json.dumps(r).encode()) for r in rows
    ]
    assert as_lines.read == len(rows)  # every row accepted or rejected, none lost
    assert as_lines.events.num_rows == sum(d.events.num_rows for d in one_by_one)
    assert sorted(as_lines.rejects["line"].to_pylist()) == [
        i for i, d in enumerate(one_by_one) if d.rejects.num_rows
    ]


def test_row_limit_holds_on_both_paths():
    rows = [event(i) for i in range(11)]
    for body in (ndjson(rows), json.dumps(rows).encode()):
        with pytest.raises(BodyError) as caught:
            decode(body, Limits(max_batch_rows=10))
        assert caught.value.status == 413
