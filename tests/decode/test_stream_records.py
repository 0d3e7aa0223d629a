"""Kinesis records as events: payload shapes, KPL aggregation, identities and rejects."""

from __future__ import annotations

import gzip
import json

from hypothesis import given
from hypothesis import strategies as st

from ecomwatch.decode.kpl import AggregationError, SubRecord, aggregate, deaggregate
from ecomwatch.decode.stream_records import StreamRecord, decode_stream_records


def event(i: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "event_time": f"2019-11-01 00:{i // 60 % 60:02d}:{i % 60:02d} UTC",
        "event_type": "view",
        "product_id": 1000 + i,
        "price": 9.5,
        "user_id": 7,
        "user_session": "s-1",
        "ip": "10.0.0.1",
    }
    return {**row, **changes}


def ndjson(*rows: dict[str, object]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def ids(decoded) -> list[tuple[int, str, int]]:
    cols = decoded.events.select(["product_id", "source", "source_pos"]).to_pylist()
    return [(c["product_id"], c["source"], c["source_pos"]) for c in cols]


def test_one_event_an_array_and_ndjson_give_the_same_events() -> None:
    rows = [event(1), event(2), event(3)]
    shapes = [
        [StreamRecord(f"r{i}", json.dumps(r).encode()) for i, r in enumerate(rows)],
        [StreamRecord("r", json.dumps(rows).encode())],
        [StreamRecord("r", ndjson(*rows) + b"\n")],
        [StreamRecord("r", gzip.compress(ndjson(*rows)))],
    ]
    products = [sorted(p for p, _, _ in ids(decode_stream_records(s))) for s in shapes]
    assert products == [[1001, 1002, 1003]] * 4


def test_identity_is_the_record_key_and_the_index_inside_it() -> None:
    decoded = decode_stream_records(
        [
            StreamRecord("k:s/0/11", ndjson(event(1), event(2))),
            StreamRecord("k:s/0/12", ndjson(event(3))),
        ]
    )
    assert ids(decoded) == [(1001, "k:s/0/11", 0), (1002, "k:s/0/11", 1), (1003, "k:s/0/12", 0)]


def test_aggregated_records_are_taken_apart_with_sub_sequence_numbers() -> None:
    data = aggregate([SubRecord("a", ndjson(event(1))), SubRecord("b", ndjson(event(2), event(3)))])
    decoded = decode_stream_records([StreamRecord("k:s/0/9", data)])
    assert ids(decoded) == [(1001, "k:s/0/9.0", 0), (1002, "k:s/0/9.1", 0), (1003, "k:s/0/9.1", 1)]


def test_bad_rows_and_broken_records_are_rejected_with_their_record() -> None:
    damaged_kpl = bytearray(aggregate([SubRecord("a", ndjson(event(1)))]))
    damaged_kpl[-1] ^= 0xFF
    records = [
        StreamRecord("good", ndjson(event(1))),
        StreamRecord("mixed", json.dumps([event(2), event(3, price="free"), 4]).encode()),
        StreamRecord("badgzip", b"\x1f\x8b\x08\x00garbage"),
        StreamRecord("badkpl", bytes(damaged_kpl)),
        StreamRecord("notjson", b"{oops\n" + ndjson(event(5))),
    ]
    decoded = decode_stream_records(records)
    assert sorted(p for p, _, _ in ids(decoded)) == [1001, 1002, 1005]
    rejected = {(r["source"], r["line"], r["reason"]) for r in decoded.rejects.to_pylist()}
    assert rejected == {
        ("mixed", 1, "bad_price"),
        ("mixed", 2, "bad_json"),
        ("badgzip", 0, "undecodable_record"),
        ("badkpl", 0, "undecodable_record"),
        ("notjson", 0, "bad_json"),
    }
    assert decoded.read == 3 + 5


def test_a_damaged_digest_is_an_error() -> None:
    data = aggregate([SubRecord("a", b"x")])
    assert deaggregate(data) == [SubRecord("a", b"x")]
    try:
        deaggregate(data[:-1] + bytes([data[-1] ^ 1]))
    except AggregationError as exc:
        assert "MD5" in str(exc)
    else:
        raise AssertionError("a damaged digest was accepted")


@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), st.binary(max_size=40)), max_size=20))
def test_aggregation_round_trips(parts: list[tuple[str, bytes]]) -> None:
    records = [SubRecord(key, data) for key, data in parts]
    assert deaggregate(aggregate(records)) == records


@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=8), st.booleans())
def test_read_equals_accepted_plus_rejected(sizes: list[int], gzipped: bool) -> None:
    records = []
    n = 0
    for r, size in enumerate(sizes):
        rows = [event(n + i, price="x" if (n + i) % 4 == 0 else 1.0) for i in range(size)]
        n += size
        data = ndjson(*rows)
        records.append(StreamRecord(f"r{r}", gzip.compress(data) if gzipped else data))
    decoded = decode_stream_records(records)
    assert decoded.read == n
    assert decoded.rejects.num_rows == sum(1 for i in range(n) if i % 4 == 0)
