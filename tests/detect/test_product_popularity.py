"""Product popularity (the `popularity` and `longtail_share` features): a lagged rank of each
product's views, the same whatever the batching, capped per IP, kept across checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from ecomwatch.detect.product_popularity import (
    BUCKET_US,
    IP_VIEWS_CAP,
    ProductPopularity,
)

HOT, WARM, COLD = 1, 2, 3  # product ids


def views(bucket_views: dict[int, list[tuple[int, int]]]) -> pa.Table:
    """Events: bucket → [(ip, product)], one view each, spread over the bucket in order."""
    rows = []
    for bucket, items in sorted(bucket_views.items()):
        for number, (ip, product) in enumerate(items):
            rows.append((bucket * BUCKET_US + number * BUCKET_US // (len(items) + 1), ip, product))
    times, ips, products = zip(*rows, strict=True)
    return pa.table(
        {
            "t_us": pa.array(times, pa.int64()),
            "ip_key": pa.array(ips, pa.uint64()),
            "product_id": pa.array(products, pa.int64()),
            "counted": pa.array([True] * len(rows)),
        }
    )


def feed(memory: ProductPopularity, table: pa.Table) -> list[float | None]:
    out = memory.popularity(table["product_id"], table["t_us"], table["ip_key"], table["counted"])
    return out.to_pylist()


def shop(buckets: range) -> dict[int, list[tuple[int, int]]]:
    """Ordinary traffic: HOT viewed most, WARM less, COLD never; one visitor per view."""
    return {
        b: [(1000 * b + i, HOT) for i in range(6)] + [(1000 * b + 10 + i, WARM) for i in range(2)]
        for b in buckets
    }


def test_unknown_until_an_hour_of_views_is_folded_then_ranked():
    memory = ProductPopularity()
    table = views({**shop(range(0, 7)), 7: [(1, HOT), (2, WARM), (3, COLD)]})
    popularity = feed(memory, table)
    per_bucket = table["t_us"].to_numpy() // BUCKET_US
    # Bucket B sees the hourly refresh made before bucket B - 1: from bucket 7 on, the one
    # at bucket 6, of buckets 0-5 (an hour of views).
    seen = list(zip(popularity, per_bucket, strict=True))
    assert all(p is None for p, b in seen if b < 7)
    hot, warm, cold = popularity[-3:]
    # Rank among the products viewed so far: WARM is viewed less than HOT, COLD never.
    assert hot == 0.5 and warm == 0.0 and cold == 0.0


def test_an_event_sees_the_hourly_refresh_before_its_previous_bucket():
    memory = ProductPopularity()
    # A swarm on COLD in buckets 6 and 7: bucket 8 sees the refresh at 6 (buckets 0-5)...
    swarm = {b: [(9000 + i, COLD) for i in range(50)] for b in (6, 7)}
    assert feed(memory, views({**shop(range(0, 8)), **swarm, 8: [(1, COLD)]}))[-1] == 0.0
    # ...bucket 13 the refresh at 12, with the swarm's views: COLD is now the most viewed.
    (after,) = feed(memory, views({**shop(range(9, 13)), 13: [(1, COLD)]}))[-1:]
    assert after == pytest.approx(2 / 3)


@pytest.mark.parametrize("parts", [1, 2, 7, 40])
def test_the_same_popularity_whatever_the_batching(parts):
    rng = np.random.default_rng(4)
    table = views(
        {b: [(int(rng.integers(0, 30)), int(rng.zipf(1.5))) for _ in range(40)] for b in range(12)}
    )
    whole = feed(ProductPopularity(), table)
    memory = ProductPopularity()
    batched: list[float | None] = []
    for chunk in np.array_split(np.arange(table.num_rows), parts):
        batched += feed(memory, table.take(pa.array(chunk)))
    assert batched == whole
    assert any(p is not None and 0 < p < 1 for p in whole)


def test_an_ip_counts_as_one_visitor_however_many_views():
    memory = ProductPopularity()
    scraper, scraped = 777, range(100, 110)
    # A scraper views ten products 20 times each per bucket (200 views): capped, its views
    # weigh IP_VIEWS_CAP in all, 2 per product, as much as WARM's two shoppers.
    assert IP_VIEWS_CAP == 20
    base = shop(range(0, 6))
    for bucket in base:
        base[bucket] += [(scraper, product) for product in scraped for _ in range(20)]
    (hot,) = feed(memory, views({**base, 7: [(1, HOT)]}))[-1:]
    # HOT (six shoppers a bucket) is viewed more than the 11 others; uncapped, each scraped
    # product (20 views a bucket) would rank above it and HOT would be at 1/12.
    assert hot == pytest.approx(11 / 12)


def test_a_checkpoint_resumes_with_the_same_popularity():
    table = views(shop(range(0, 10)))
    whole = feed(ProductPopularity(), table)
    first = ProductPopularity()
    half = table.num_rows // 2
    head = feed(first, table.slice(0, half))
    numbers, weights, pending = first.state()
    resumed = ProductPopularity.from_state(json.loads(json.dumps(numbers)), weights, pending)
    assert head + feed(resumed, table.slice(half)) == whole


def test_events_without_a_product_have_no_popularity():
    memory = ProductPopularity()
    feed(memory, views(shop(range(0, 7))))
    out = memory.popularity(
        pa.array([None, HOT], pa.int64()),
        pa.array([7 * BUCKET_US, 7 * BUCKET_US], pa.int64()),
        pa.array([1, 2], pa.uint64()),
        pa.array([False, True]),
    )
    assert out.to_pylist()[0] is None and out.to_pylist()[1] is not None


def test_unknown_while_the_products_viewed_have_few_views_each():
    """A sparse start (a month's first night): an hour of views, but each product viewed
    about once, so nearly every product would rank as long tail. Popularity stays unknown
    until the viewed products have three views each on average."""
    sparse = {b: [(1000 * b + i, 100 * b + i) for i in range(6)] for b in range(0, 12)}
    memory = ProductPopularity()
    assert all(p is None for p in feed(memory, views(sparse)))  # two hours of it
    # The same shop once its views pile up: HOT and WARM viewed again and again.
    later = {**shop(range(12, 40)), 40: [(1, HOT), (2, WARM), (3, COLD)]}
    hot, warm, cold = feed(memory, views(later))[-3:]
    assert hot is not None and warm is not None and cold is not None
    assert hot > warm > cold
