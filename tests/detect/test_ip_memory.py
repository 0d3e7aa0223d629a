"""The IP memory behind `ip_age_s`: one row per IP key, forgetting, old checkpoints."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ecomwatch.detect.entity_keys import address_keys
from ecomwatch.detect.ip_memory import IpMemory


def keys_of(*ips: str) -> pa.ChunkedArray:
    return address_keys(pa.chunked_array([pa.array(ips).dictionary_encode()]))[0]


def times(*values: int) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, pa.int64())])


def test_first_and_last_sighting_per_ip_across_batches_and_forgetting():
    memory = IpMemory(memory_s=100)
    memory.add(keys_of("192.0.2.1", "192.0.2.2", "192.0.2.1"), times(50, 10, 5))
    memory.add(keys_of("192.0.2.1", "2001:db8::1"), times(300_000_000, 20))
    seen = {
        row["seen_key"]: (row["first_us"], row["last_us"]) for row in memory.table().to_pylist()
    }
    one, two, v6 = keys_of("192.0.2.1", "192.0.2.2", "2001:db8::1").to_pylist()
    assert seen == {one: (5, 300_000_000), two: (10, 10), v6: (20, 20)}
    memory.forget(watermark_us=250_000_000)  # 100 s of memory: only 192.0.2.1 is recent
    assert memory.table()["seen_key"].to_pylist() == [one]


def test_a_checkpoint_holding_addresses_as_text_is_read_by_key():
    old = pa.table(
        {
            "seen_ip": ["192.0.2.1", "192.0.2.2"],
            "first_us": pa.array([5, 10], pa.int64()),
            "last_us": pa.array([50, 10], pa.int64()),
        }
    )
    memory = IpMemory(memory_s=100)
    memory.restore(old)
    one, two = keys_of("192.0.2.1", "192.0.2.2").to_pylist()
    assert sorted(memory.table().to_pylist(), key=lambda r: r["first_us"]) == [
        {"seen_key": one, "first_us": 5, "last_us": 50},
        {"seen_key": two, "first_us": 10, "last_us": 10},
    ]


def test_merging_batch_by_batch_matches_grouping_everything_at_once():
    rng = np.random.default_rng(7)
    memory = IpMemory(memory_s=10**9)
    all_keys, all_times = [], []
    handed_out = None
    for batch in range(30):
        keys = rng.integers(1, 400, size=200).astype(np.uint64)
        stamps = rng.integers(0, 10**9, size=200)
        memory.add(pa.chunked_array([keys]), pa.chunked_array([stamps]))
        all_keys.append(keys)
        all_times.append(stamps)
        if batch == 10:
            handed_out = memory.table()
            before = handed_out.to_pylist()
    keys, stamps = np.concatenate(all_keys), np.concatenate(all_times)
    expected = {
        int(k): (int(stamps[keys == k].min()), int(stamps[keys == k].max())) for k in set(keys)
    }
    got = {r["seen_key"]: (r["first_us"], r["last_us"]) for r in memory.table().to_pylist()}
    assert got == expected
    assert memory.table()["seen_key"].to_pylist() == sorted(expected)
    assert handed_out is not None and handed_out.to_pylist() == before  # not changed later


def test_the_age_of_an_ip_group_is_that_of_its_last_event() -> None:
    """Grouped by IP, `ip_age_s` is joined once per group (window_sql.aggregate_sql); it must
    equal the per-event age's maximum, which is how the feature is defined."""
    import pyarrow.compute as pc

    from ecomwatch.detect.detector import Detector
    from ecomwatch.detect.rules import RuleSpec, compile_rule
    from ecomwatch.detect.window_sql import aggregate_sql
    from ecomwatch.simulate.traffic import TrafficSpec, generate
    from ecomwatch.simulate.writers import as_typed_table

    events = as_typed_table(pa.concat_tables(generate(TrafficSpec(events=20_000, seed=3))))
    spec = RuleSpec(name="young-ip", key="ip", window="10m", condition="ip_age_s <= 900",
                    severity="low")  # fmt: skip
    rule = compile_rule(spec)
    detector = Detector([rule], judge_rows=10**9)
    half = events.num_rows // 2
    for part in (events.slice(0, half), events.slice(half)):
        detector.process(part, None)
    con = detector.con
    con.register("events", detector.kept.since(-(2**62)))
    con.register("ip_seen", detector.ip_memory.table())
    grouped = con.sql(
        aggregate_sql(rule, (rule.spec.key,), 600_000_000, ("ip_age_s",), "TRUE")
    ).to_arrow_table()
    per_event = con.sql(
        "SELECT ip_key AS key0, t_us // 600000000 * 600000000 AS window_us, "
        "coalesce(max(epoch(event_time) - s.first_us / 1e6), 0) AS ip_age_s "
        "FROM events e LEFT JOIN ip_seen s ON s.seen_key = e.ip_key "
        "WHERE ip_key IS NOT NULL GROUP BY ALL"
    ).to_arrow_table()
    order = [("key0", "ascending"), ("window_us", "ascending")]
    got = grouped.select(["key0", "window_us", "ip_age_s"]).sort_by(order)
    assert got.num_rows == per_event.num_rows > 100
    assert got.equals(per_event.sort_by(order).cast(got.schema))
    assert pc.max(got["ip_age_s"]).as_py() > 0
