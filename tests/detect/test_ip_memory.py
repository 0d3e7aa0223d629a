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
