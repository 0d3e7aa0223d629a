"""Writes examples/rules/swarms.csv.gz (run from the repository root): almost two hours of an
ordinary shop, then two botnets that look like new visitors one by one — one spread over the
long tail of the catalogue, one working a single category — and a crowd of new visitors
from a newsletter, who must stay quiet."""

import csv
import gzip
import io
import random
from datetime import UTC, datetime, timedelta

from ecomwatch.schema import REES46_COLUMNS

rng = random.Random(22)
T0 = datetime(2019, 11, 1, 8, 0, 0, tzinfo=UTC)
PRODUCTS = 300  # ids 1_000_000 + n; ten categories of 30 products
rows = []


def category(product):
    return 2_053_013_555_000_000_000 + (product - 1_000_000) // 30


def agent(i):
    return (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{100 + i % 30}.0.0.0 Safari/537.36"
    )


def ev(s, kind, product, user, session, ip, ua):
    at = T0 + timedelta(seconds=s)
    rows.append(
        [
            at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            kind,
            product,
            category(product),
            "",
            "",
            "19.99",
            user,
            session,
            ip,
            ua,
        ]
    )


# The shop: 1,500 regular visitors (addresses seen all along), 30 sessions a minute, each a
# fresh pick weighted to the hits (product n picked about 1/(n+1) as often) and a few steps
# to neighbouring products of the same category; one session in five carts.
weights = [1 / (n + 1) for n in range(PRODUCTS)]
for number in range(3_300):
    start = rng.uniform(0, 6_600)
    visitor = rng.randrange(1_500)
    ip = f"10.{visitor // 250}.{visitor % 250}.7"
    product = 1_000_000 + rng.choices(range(PRODUCTS), weights)[0]
    t = start
    for step in range(rng.randint(2, 7)):
        ev(t, "view", product, 10_000 + visitor, f"shop-{number}", ip, agent(visitor))
        if step == 1 and rng.random() < 0.2:
            ev(t + 20, "cart", product, 10_000 + visitor, f"shop-{number}", ip, agent(visitor))
        t += rng.uniform(15, 90)
        low = 1_000_000 + (product - 1_000_000) // 30 * 30
        product = min(max(product + rng.randint(-3, 3), low), low + 29)


def unrelated_ip(i, first_octets, first):
    """A home address on some network; the first of each group is a fixed one (fixtures.toml)."""
    if i == 0:
        return first
    return (
        f"{rng.choice(first_octets)}.{rng.randrange(256)}."
        f"{rng.randrange(256)}.{rng.randrange(1, 255)}"
    )


# long-tail-swarm: 60 new addresses on unrelated networks, from minute 80 (popularity is known
# after an hour of views), each viewing 5
# products of the least viewed half (categories 5 to 9), one per category, within a minute
for i in range(60):
    t = 4_800 + rng.uniform(0, 500)
    ip = unrelated_ip(i, [24, 67, 73, 98], "24.1.2.3")
    for k in range(5):
        product = 1_000_000 + 30 * (5 + k) + rng.randrange(30)
        ev(t, "view", product, 20_000 + i, f"tail-{i}", ip, agent(i))
        t += rng.uniform(2, 10)

# category-swarm: 40 new addresses, from minute 90, each viewing products of category 9
# six times within a minute
for i in range(40):
    t = 5_400 + rng.uniform(0, 500)
    ip = unrelated_ip(i, [37, 82, 109, 151], "37.1.2.3")
    for _ in range(6):
        ev(t, "view", 1_000_270 + rng.randrange(30), 30_000 + i, f"cat-{i}", ip, agent(i + 7))
        t += rng.uniform(2, 8)

# quiet: a newsletter brings 150 new visitors within ten minutes, from minute 82: each opens
# a hit and reads two or three of its neighbours, a few cart
for i in range(150):
    t = 4_920 + rng.uniform(0, 600)
    ip = unrelated_ip(i, [2, 86, 174, 217], "86.1.2.3")
    product = 1_000_000 + rng.randrange(3)
    for step in range(rng.randint(2, 4)):
        ev(t, "view", product + step, 40_000 + i, f"news-{i}", ip, agent(i + 3))
        t += rng.uniform(20, 60)
    if i % 10 == 0:
        ev(t, "cart", product, 40_000 + i, f"news-{i}", ip, agent(i + 3))

rows.sort(key=lambda r: r[0])
with gzip.GzipFile("examples/rules/swarms.csv.gz", "wb", mtime=0) as packed:  # same bytes each run
    out = io.TextIOWrapper(packed, newline="")
    writer = csv.writer(out)
    writer.writerow([*REES46_COLUMNS, "ip", "user_agent"])
    writer.writerows(rows)
    out.flush()
