"""The detector's kept events: rows leave once no rule can need them, narrow long rules keep
only their own rows, small tables are merged."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from ecomwatch.detect.kept_events import KEPT_SCHEMA, KeptEvents, Retention

S = 1_000_000


def rows(start_s: int, count: int, *, search_engine_every: int = 0) -> pa.Table:
    """`count` events one second apart; every n-th from a search engine; the rest zeros/nulls."""
    times = [(start_s + i) * S for i in range(count)]
    engines = [bool(search_engine_every) and i % search_engine_every == 0 for i in range(count)]
    given = {"event_time": times, "t_us": times, "search_engine": engines, "declared_bot": engines}

    def column(field: pa.Field) -> pa.Array:
        if field.name in given:
            return pa.array(given[field.name]).cast(field.type)
        if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            return pa.array([0] * count).cast(field.type)
        return pa.nulls(count, field.type)

    return pa.table({f.name: column(f) for f in KEPT_SCHEMA}, schema=KEPT_SCHEMA)


def test_rows_only_a_narrow_long_rule_needs_are_kept_then_dropped():
    con = duckdb.connect()
    kept = KeptEvents(
        [Retention(60, "TRUE"), Retention(3600, "(CAST(search_engine AS INTEGER) = 1)")]
    )
    kept.append(rows(0, 100, search_engine_every=10))  # 10 crawler rows among 100
    kept.evict(100 * S, con)
    assert kept.num_rows == 100  # the 60-s rule still needs the last 60 s of them
    kept.evict(200 * S, con)
    assert kept.num_rows == 10  # past 60 s: only the crawler rows, for the 1-h rule
    kept.evict(3_000 * S, con)
    assert kept.num_rows == 10
    kept.evict(4_000 * S, con)
    assert kept.num_rows == 0


def test_small_tables_are_merged_and_since_finds_the_ones_in_range():
    kept = KeptEvents([Retention(60, "TRUE")])
    for second in range(0, 1_000, 10):
        kept.append(rows(second, 10))
    assert kept.num_rows == 1_000 and len(kept.tables) <= 10
    recent = kept.since(900 * S)
    assert recent.num_rows >= 100 and recent.num_rows < 1_000
    assert min(recent["t_us"].to_pylist()) <= 900 * S


def test_event_codes_number_every_type_once_per_dictionary_value():
    from ecomwatch.detect.features import EVENT_CODES, is_event
    from ecomwatch.detect.kept_events import event_codes

    types = ["view", "cart", None, "purchase", "remove_from_cart", "request", "view", "bogus"]
    expected = [EVENT_CODES.get(t) if t else None for t in types]
    plain = pa.chunked_array([pa.array(types[:3]), pa.array(types[3:])])
    assert event_codes(plain).to_pylist() == expected
    encoded = pa.chunked_array([pa.array(types).dictionary_encode()])
    assert event_codes(encoded).to_pylist() == expected
    assert len(set(EVENT_CODES.values())) == len(EVENT_CODES)
    # The SQL the queries compare them with picks exactly the rows of those types.
    con = duckdb.connect()
    table = pa.table({"event_type": types, "event_code": event_codes(plain)})
    con.register("t", table)
    picked = con.execute(
        f"SELECT event_type FROM t WHERE {is_event('cart', 'purchase')} ORDER BY ALL"
    ).fetchall()
    assert picked == [("cart",), ("purchase",)]
