"""Synthetic shop traffic in the REES46 format, plus ip and user_agent.

Sessions are the unit: each has a user (several sessions per user, heavy users more), a start
time following a daily cycle, a length of a few to dozens of events, human gaps of seconds to
minutes, a walk through neighbouring products of a category, and — for some — carts, removals
and purchases of the products just viewed. Everything is drawn with numpy per chunk of about a
million events, so memory stays flat and 67.5 million events take minutes. The output is in
event-time order. The same seed gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.parallel import ordered_parallel
from ecomwatch.schema import EVENT_TYPES
from ecomwatch.simulate.catalog import Catalog, Population, make_catalog, make_population

EVENTS_PER_DAY = 2_250_000  # REES46 2019-Nov: 67.5 million events in 30 days
DEFAULT_START = datetime(2019, 11, 1, tzinfo=UTC)
CHUNK_EVENTS = 1_000_000

# Calibrated so that the event mix lands near REES46 2019-Nov (94% views, 4-5% carts, 1.4%
# purchases); `tests/simulate` checks the marginals.
CART_INTENT = 0.25  # share of sessions that put something in the cart
BUYER_SHARE = 0.6  # share of those sessions that go on to buy
CART_PROB = 0.225  # per event after the first, in a cart-intent session
PURCHASE_PROB = 0.83  # a buyer's event right after a cart becomes the purchase
REMOVE_PROB = 0.09  # a non-buyer's event right after a cart becomes a removal
NEIGHBOUR_PROB = 0.65  # next product is a neighbour (same category) rather than a fresh pick


def view_shares(catalog: Catalog) -> np.ndarray:
    """The share of views each product gets from this traffic (what "popular" means to a
    shop): a fresh pick by `catalog.popularity`, then a walk of k neighbour steps (k
    geometric, continuing with NEIGHBOUR_PROB), so a hit's neighbours are viewed often too."""
    step = np.ones(13) / 13  # one step: -6..6 products, uniform
    walked = catalog.popularity.astype(np.float64)
    shares = np.zeros(catalog.size)
    weight = 1 - NEIGHBOUR_PROB
    while weight > 1e-9:
        shares += weight * walked
        walked = np.convolve(walked, step, mode="same")
        weight *= NEIGHBOUR_PROB
    return shares / shares.sum()


@dataclass(frozen=True)
class TrafficSpec:
    events: int
    seed: int = 0
    start: datetime = DEFAULT_START
    days: float | None = None

    @property
    def duration_s(self) -> int:
        days = self.days if self.days is not None else max(1.0, self.events / EVENTS_PER_DAY)
        return int(days * 86_400)


def _hourly_weights(hours: int, start: datetime) -> np.ndarray:
    """A daily cycle peaking in the afternoon (UTC), as in the REES46 shops."""
    hour_of_day = (np.arange(hours) + start.hour) % 24
    return 1.0 + 0.7 * np.cos(2 * np.pi * (hour_of_day - 15) / 24)


def _plan_chunks(spec: TrafficSpec, rng: np.random.Generator) -> list[tuple[int, int, np.ndarray]]:
    """Split the period into chunks of whole hours: (first hour, event count, per-hour weights)."""
    hours = max(1, -(-spec.duration_s // 3600))
    weights = _hourly_weights(hours, spec.start)
    per_hour = rng.multinomial(spec.events, weights / weights.sum())
    chunks: list[tuple[int, int, np.ndarray]] = []
    first, total = 0, 0
    for h in range(hours):
        total += int(per_hour[h])
        if total >= CHUNK_EVENTS or h == hours - 1:
            chunks.append((first, total, per_hour[first : h + 1].astype(float)))
            first, total = h + 1, 0
    return chunks


def _uuid_strings(rng: np.random.Generator, n: int) -> pa.Array:
    """n random UUID4-shaped strings, formatted without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = hexdigits[raw >> 4]
    digits[:, 1::2] = hexdigits[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
        out[:, dst : dst + width] = digits[:, src : src + width]
    return pa.array(out.view("S36").ravel()).cast(pa.string())


def _session_lengths(rng: np.random.Generator, events: int) -> np.ndarray:
    """Lengths of a few to dozens of events (log-normal, mean about 5) summing to `events`."""
    lengths = np.empty(0, dtype=np.int64)
    while lengths.sum() < events:
        more = 1 + np.floor(rng.lognormal(1.0, 0.9, max(16, events // 3))).astype(np.int64)
        lengths = np.concatenate([lengths, np.minimum(more, 150)])
    cut = int(np.searchsorted(np.cumsum(lengths), events))
    lengths = lengths[: cut + 1].copy()
    lengths[-1] -= lengths.sum() - events
    return lengths[lengths > 0]


def _chunk(
    spec: TrafficSpec,
    rng: np.random.Generator,
    catalog: Catalog,
    people: Population,
    first_hour: int,
    events: int,
    hour_weights: np.ndarray,
) -> pa.Table:
    lengths = _session_lengths(rng, events)
    n_sessions = len(lengths)
    session = np.repeat(np.arange(n_sessions), lengths)
    starts_at = np.cumsum(lengths) - lengths
    position = np.arange(events) - starts_at[session]

    hour = first_hour + rng.choice(
        len(hour_weights), n_sessions, p=hour_weights / hour_weights.sum()
    )
    start_s = int(spec.start.timestamp()) + hour * 3600 + rng.integers(0, 3600, n_sessions)
    gaps = np.clip(rng.lognormal(np.log(30), 1.1, events), 1, 1800).astype(np.int64)
    gaps[position == 0] = 0
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[starts_at][session]
    times = start_s[session] + elapsed

    # Product walk: fresh picks by popularity, otherwise a step to a neighbouring product.
    fresh = (position == 0) | (rng.random(events) > NEIGHBOUR_PROB)
    picks = rng.choice(catalog.size, events, p=catalog.popularity)
    steps = np.where(fresh, 0, rng.integers(-6, 7, events))
    anchor = np.maximum.accumulate(np.where(fresh, np.arange(events), 0))
    walked = np.cumsum(steps)
    product = np.clip(picks[anchor] + walked - walked[anchor], 0, catalog.size - 1)

    # Funnel: carts of the product just viewed; then purchases or removals of what was carted.
    cart_intent = rng.random(n_sessions) < CART_INTENT
    buyer = cart_intent & (rng.random(n_sessions) < BUYER_SHARE)
    kind = np.zeros(events, dtype=np.int8)  # 0 view, 1 cart, 2 remove, 3 purchase
    is_cart = cart_intent[session] & (position > 0) & (rng.random(events) < CART_PROB)
    kind[is_cart] = 1
    follows_cart = np.zeros(events, dtype=bool)
    follows_cart[1:] = is_cart[:-1] & (position[1:] > 0) & ~is_cart[1:]
    roll = rng.random(events)
    kind[follows_cart & buyer[session] & (roll < PURCHASE_PROB)] = 3
    kind[follows_cart & ~buyer[session] & (roll < REMOVE_PROB)] = 2
    for step in (kind == 1, kind > 1):  # carts first, so purchases see the carted product
        product[1:][step[1:]] = product[:-1][step[1:]]

    user = rng.choice(len(people.user_id), n_sessions, p=people.activity)
    session_ids = _uuid_strings(rng, n_sessions)
    idx_product = pa.array(product.astype(np.int32))
    idx_user = pa.array(user[session].astype(np.int32))

    def labels(indices: pa.Array, values: pa.Array) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(indices, values)

    table = pa.table(
        {
            "event_time": pa.array(times * 1_000_000, pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "event_type": labels(pa.array(kind.astype(np.int32)), pa.array(EVENT_TYPES)),
            "product_id": pa.array(catalog.product_id[product]),
            "category_id": pa.array(catalog.category_id[product]),
            "category_code": labels(idx_product, catalog.category_code),
            "brand": labels(idx_product, catalog.brand),
            "price_cents": pa.array(catalog.price_cents[product]),
            "user_id": pa.array(people.user_id[user[session]]),
            "user_session": labels(pa.array(session.astype(np.int32)), session_ids),
            "ip": labels(idx_user, people.ip),
            "user_agent": labels(idx_user, people.user_agent),
        }
    )
    return table


def make_world(spec: TrafficSpec) -> tuple[Catalog, Population]:
    """The shop's catalogue and shoppers for a spec (the same for the same seed and size)."""
    world_seed = np.random.SeedSequence(spec.seed).spawn(3)[0]
    world = np.random.default_rng(world_seed)
    n_products = int(np.clip(spec.events // 150, 500, 200_000))
    n_users = int(np.clip(spec.events // 18, 50, 5_000_000))
    return make_catalog(n_products, world), make_population(n_users, world)


def generate(
    spec: TrafficSpec, *, threads: int = 2, catalog: Catalog | None = None
) -> Iterator[pa.Table]:
    """Yield the traffic as tables in event-time order (columns: REES46 + ip, user_agent).

    `price_cents` holds the price; writers format it. Chunks are drawn on `threads` threads,
    each from its own seed, so the output does not depend on the thread count. `catalog`:
    another spec's products (shoppers of this spec in that shop), instead of this spec's own.
    """
    seeds = np.random.SeedSequence(spec.seed)
    _, plan_seed, chunk_seed = seeds.spawn(3)
    own_catalog, people = make_world(spec)
    catalog = own_catalog if catalog is None else catalog
    plans = _plan_chunks(spec, np.random.default_rng(plan_seed))
    end_hour = plans[-1][0] + len(plans[-1][2])

    def draw(item: tuple[tuple[int, int, np.ndarray], np.random.SeedSequence]) -> pa.Table:
        (first_hour, events, weights), seed = item
        rng = np.random.default_rng(seed)
        return _chunk(spec, rng, catalog, people, first_hour, events, weights)

    work = iter(zip(plans, chunk_seed.spawn(len(plans)), strict=True))
    carry: pa.Table | None = None
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="simulate") as pool:
        for (first_hour, _, weights), table in zip(
            plans, ordered_parallel(work, draw, pool, threads + 1), strict=True
        ):
            if carry is not None:
                table = pa.concat_tables([carry, table.cast(carry.schema)])
            table = table.sort_by([("event_time", "ascending")])
            if first_hour + len(weights) >= end_hour:
                yield table
                return
            # Sessions that run past the next chunk's first hour wait for it: time order holds.
            boundary = int(spec.start.timestamp()) + (first_hour + len(weights)) * 3600
            cut = pa.scalar(boundary * 1_000_000, pa.timestamp("us", tz="UTC"))
            late = pc.greater_equal(table["event_time"], cut)
            carry = table.filter(late)
            yield table.filter(pc.invert(late))
