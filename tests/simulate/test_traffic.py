"""The simulator: deterministic, calibrated to REES46 marginals, realistic shapes."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic


def table(events: int, seed: int) -> pa.Table:
    parts = list(generate(TrafficSpec(events=events, seed=seed)))
    return pa.concat_tables([p.cast(parts[0].schema) for p in parts])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    paths = [tmp_path / f"{i}.csv" for i in range(3)]
    for path, seed in zip(paths, (1, 1, 2), strict=True):
        write_traffic(generate(TrafficSpec(events=20_000, seed=seed)), path)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert digests[0] == digests[1] != digests[2]


def test_marginals_match_rees46_november():
    t = table(1_200_000, seed=4)  # more than one generation chunk
    assert t.num_rows == 1_200_000
    kinds = t["event_type"].cast(pa.string()).to_numpy(zero_copy_only=False)
    share = {
        k: float(np.mean(kinds == k)) for k in ("view", "cart", "purchase", "remove_from_cart")
    }
    assert 0.93 <= share["view"] <= 0.95
    assert 0.04 <= share["cart"] <= 0.05
    assert 0.012 <= share["purchase"] <= 0.016
    # Event-time order across generation chunks.
    times = t["event_time"].cast(pa.int64()).to_numpy()
    assert np.all(np.diff(times) >= 0)


def test_sessions_users_products_and_ip_blocks_have_realistic_shapes():
    t = table(300_000, seed=9)
    sessions = t["user_session"].cast(pa.string())
    per_session = pc.value_counts(sessions).field("counts").to_numpy()
    assert 3 <= per_session.mean() <= 8
    assert per_session.max() >= 30  # some sessions run to dozens of events
    pairs = (
        pa.table({"u": t["user_id"], "s": sessions})
        .group_by("u")
        .aggregate([("s", "count_distinct")])
    )
    assert pairs["s_count_distinct"].to_numpy().mean() >= 2  # several sessions per user
    # Heavy-tailed popularity: the top 1% of products draw a large share of views.
    views = pc.value_counts(t["product_id"]).field("counts").to_numpy()
    top = np.sort(views)[::-1][: max(1, len(views) // 100)].sum() / views.sum()
    assert top > 0.15
    # Human gaps: within a session, seconds to minutes.
    s = pa.table({"user_session": sessions, "event_time": t["event_time"]}).sort_by(
        [("user_session", "ascending"), ("event_time", "ascending")]
    )
    sid = s["user_session"].cast(pa.string()).to_numpy(zero_copy_only=False)
    ts = s["event_time"].cast(pa.int64()).to_numpy() // 1_000_000
    gaps = np.diff(ts)[sid[1:] == sid[:-1]]
    assert 5 <= np.median(gaps) <= 120
    # Many users behind popular /24 blocks.
    ips = t["ip"].cast(pa.string()).to_numpy(zero_copy_only=False)
    blocks = np.array([ip.rsplit(".", 1)[0] for ip in ips[:50_000]])
    users = t["user_id"].to_numpy()[:50_000]
    per_block = (
        pa.table({"b": blocks, "u": users}).group_by("b").aggregate([("u", "count_distinct")])
    )
    assert per_block["u_count_distinct"].to_numpy().max() >= 50


def test_output_does_not_depend_on_the_thread_count():
    one = list(generate(TrafficSpec(events=1_500_000, seed=8), threads=1))
    two = list(generate(TrafficSpec(events=1_500_000, seed=8), threads=2))
    assert len(one) == len(two) > 1
    for a, b in zip(one, two, strict=True):
        assert a.equals(b)
