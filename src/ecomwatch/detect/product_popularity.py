"""How popular each product is, for the `popularity` and `longtail_share` features.

A product's popularity is the share of the shop's products viewed less than it over about the
past day (0: the least viewed, or never; near 1: the hits). Views are shoppers' views: not
those of declared bots and crawlers. A rank, not a ratio to the average, because scrapers that
walk the whole catalogue lift every product alike: they change how often the long tail is
viewed, not that it is the long tail. A residential botnet or a low-rate flood spread over
long-tail products looks, visitor by visitor, like new shoppers; what gives them away is that
their views fall on products almost no one views. Measuring that needs a baseline the attack
cannot move, so popularity lags:

- views are counted in 10-minute buckets of event time, summed with an exponential decay of
  one day;
- the ranks are refreshed every hour of event time from the buckets before that hour, and an
  event sees the latest refresh made without its own bucket and the one before it (its
  counts are 10 to 70 minutes old), so a flood's own views reach the baseline only after it
  has been judged;
- an event's popularity depends only on the events before its refresh, never on how the input
  was batched (events later than a bucket's length are folded into later refreshes only);
- before an hour of views is known, and as many as three a viewed product on average (a
  month's first night has fewer), popularity is unknown (null) and no rule reads it.

An address counts as one visitor: its views in a bucket add at most 20 to the counts (shared
between the products it viewed), so a scraper walking the whole catalogue does not lift the
long tail. Each product met gets a slot (a hash table kept across batches, `IdSlots`): its
weight is a NumPy array indexed by slot, a bucket's views are added in one `bincount`, and a
refresh ranks the viewed products with one sort, so a batch costs a few passes over its rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BUCKET_US = 600 * 1_000_000  # views are counted per 10 minutes of event time
REFRESH_BUCKETS = 6  # the ranks are refreshed every hour of event time...
LAG_BUCKETS = 2  # ...from the buckets up to 2 before the event's (10 to 70 minutes old)
DECAY_BUCKETS = 144.0  # weights fall by e every day (144 buckets)
READY_BUCKETS = 6  # popularity is known once an hour of views is folded...
# ...and the products viewed have been viewed this many times on average: before that nearly
# every product is "long tail" by chance (a month's first hour, at night: 1.3 views a product,
# and ordinary visitors looked like a long-tail swarm), after it a rank means something.
READY_VIEWS_PER_PRODUCT = 3.0
KEEP_SNAPSHOTS = 3  # rank tables kept for the latest refreshes (late events reuse them)
IP_VIEWS_CAP = 20  # views an IP adds to a bucket's counts at most (scrapers count as one visitor)
RESCALE_AT = 500.0  # exponent past which the weights are scaled back (float64 stays finite)
FREE_CELL = np.iinfo(np.int64).min  # a free cell (no id is this)
SLOT_HASH = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: 2^64 / golden ratio
SLOT_MIN_BITS = 10
SLOT_MAX_LOAD = 0.5  # cells used at most: probe runs stay short


class IdSlots:
    """Dense slots for integer ids, kept across batches: id → its slot (0, 1, 2… in the order
    met). Arrow's `index_in` builds a hash table of every id known on each call: with tens of
    thousands of products and batches of some 30,000 rows, building it cost several times the
    lookups. This table is built once and grows: open addressing (linear probing) in NumPy
    arrays, each probe step one vectorized pass over the values still looking. (Here, not in a
    module of its own: this file is shipped alone to the Flink job.)"""

    def __init__(self) -> None:
        self.ids = np.empty(0, np.int64)  # slot → id
        self._bits = SLOT_MIN_BITS
        self._keys = np.full(1 << SLOT_MIN_BITS, FREE_CELL, np.int64)
        self._slots = np.zeros(1 << SLOT_MIN_BITS, np.int64)

    @classmethod
    def of(cls, ids: np.ndarray) -> IdSlots:
        """A table whose slots are `ids`' positions (distinct ids)."""
        table = cls()
        table.slots(np.asarray(ids, np.int64))
        return table

    def slots(self, values: np.ndarray) -> np.ndarray:
        """The slot of each id; ids not met before get the next slots, in order of first
        appearance."""
        values = np.asarray(values, np.int64)
        marker = values == FREE_CELL
        if marker.any():  # the one id a cell cannot hold: looked up beside the table
            return self._with_marker(values, marker)
        cells = self._cells(values)
        slots = self._slots[cells]
        new = self._keys[cells] != values
        if new.any():
            # A slot never moves (growing the table moves cells): only the new ids are
            # looked up again.
            self._add(_first_appearances(values[new]))
            slots[new] = self._slots[self._cells(values[new])]
        return slots

    def _with_marker(self, values: np.ndarray, marker: np.ndarray) -> np.ndarray:
        """`slots` of values holding the free-cell marker (int64's least value)."""
        known = np.flatnonzero(self.ids == FREE_CELL)
        out = np.empty(len(values), np.int64)
        first = int(np.argmax(marker))
        out[:first] = self.slots(values[:first])
        if not len(known):
            self.ids = np.append(self.ids, FREE_CELL)
            known = np.array([len(self.ids) - 1])
        out[first] = known[0]
        out[first + 1 :] = self.slots(values[first + 1 :])
        return out

    def _cells(self, values: np.ndarray) -> np.ndarray:
        """The cell of each value: where it is, or the free cell that ends its probe run."""
        mask = (1 << self._bits) - 1
        cells = (values.view(np.uint64) * SLOT_HASH >> np.uint64(64 - self._bits)).astype(np.int64)
        looking = np.arange(len(values))
        while len(looking):
            keys = self._keys[cells[looking]]
            settled = (keys == values[looking]) | (keys == FREE_CELL)
            looking = looking[~settled]
            cells[looking] = (cells[looking] + 1) & mask
        return cells

    def _add(self, new: np.ndarray) -> None:
        """Give distinct ids not in the table the next slots."""
        first = len(self.ids)
        self.ids = np.concatenate([self.ids, new])
        if len(self.ids) > SLOT_MAX_LOAD * len(self._keys):
            while len(self.ids) > SLOT_MAX_LOAD * (1 << self._bits):
                self._bits += 1
            self._keys = np.full(1 << self._bits, FREE_CELL, np.int64)
            self._slots = np.zeros(1 << self._bits, np.int64)
            self._insert(self.ids, np.arange(len(self.ids)))
        else:
            self._insert(new, np.arange(first, len(self.ids)))

    def _insert(self, ids: np.ndarray, slots: np.ndarray) -> None:
        """Place distinct ids not in the table: each round, of the ids whose probe ends at the
        same free cell, the first takes it and the others probe on."""
        while len(ids):
            cells = self._cells(ids)
            _, winners = np.unique(cells, return_index=True)
            self._keys[cells[winners]] = ids[winners]
            self._slots[cells[winners]] = slots[winners]
            rest = np.ones(len(ids), bool)
            rest[winners] = False
            ids, slots = ids[rest], slots[rest]


@dataclass
class ProductPopularity:
    """The decayed, capped view counts per product and the hourly ranks made of them."""

    # Every product met gets a slot, in the order met: its id, its weight (0 until viewed).
    slot_of: IdSlots = field(default_factory=IdSlots)
    weights: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    folded_until: int | None = None  # buckets before this one are in `weights`
    folded_buckets: int = 0  # how many buckets with views were folded
    folded_views: float = 0.0  # the (capped) views folded, not decayed
    scale_origin: int = 0  # bucket whose weight factor is 1
    # bucket → the (IP keys, product slots) of its views, not folded yet
    pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    # refresh bucket → popularity per slot: what the events after that refresh see
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)

    def popularity(
        self, product_id: pa.Array, times_us: pa.Array, ip_key: pa.Array, counted: pa.Array
    ) -> pa.Array:
        """Each event's product popularity (float32; null when not known yet or no product),
        noting the batch's `counted` views (a shopper's, not a declared bot's) for the buckets
        after theirs."""
        buckets = pc.divide(times_us, BUCKET_US).to_numpy(zero_copy_only=False)
        has_product = product_id.is_valid().to_numpy(zero_copy_only=False)
        slots = np.zeros(len(product_id), np.int64)
        slots[has_product] = self._slots(product_id.drop_null())
        # The batch's own views count first: an event sees those of earlier buckets too.
        views = counted.fill_null(False).to_numpy(zero_copy_only=False) & has_product
        ips = ip_key.fill_null(0).to_numpy(zero_copy_only=False).astype(np.uint64)
        self._note(buckets[views], ips[views], slots[views])
        out = np.full(len(slots), np.nan, np.float32)
        refreshes = _refresh_of(buckets)
        for refresh in _distinct(refreshes):
            self._fold_before(refresh)
            snapshot = self._snapshot(refresh)
            rows = np.flatnonzero((refreshes == refresh) & has_product)
            if snapshot is not None and len(rows):
                # A product met after the refresh was not viewed before it: 0.
                ranked = np.append(snapshot, np.float32(0))
                out[rows] = ranked[np.minimum(slots[rows], len(snapshot))]
        return pa.array(out, pa.float32(), mask=np.isnan(out))

    @property
    def ids(self) -> np.ndarray:
        """The product id of each slot."""
        return self.slot_of.ids

    def _slots(self, product_id: pa.Array) -> np.ndarray:
        """The slot of each product id (no nulls), giving new products the next ones."""
        slots = self.slot_of.slots(product_id.to_numpy(zero_copy_only=False))
        if len(self.ids) > len(self.weights):
            grown = np.zeros(len(self.ids))
            grown[: len(self.weights)] = self.weights
            self.weights = grown
        return slots

    def _note(self, buckets: np.ndarray, ips: np.ndarray, slots: np.ndarray) -> None:
        """Add views to their buckets' pending views (or, for a bucket already folded — an
        event later than a bucket's length — straight into the weights)."""
        for bucket in _distinct(buckets):
            mine = buckets == bucket
            if self.folded_until is not None and bucket < self.folded_until:
                self._add([(ips[mine], slots[mine])], bucket)
                continue
            self.pending.setdefault(bucket, []).append((ips[mine], slots[mine]))

    def _fold_before(self, end: int) -> None:
        """Fold every pending bucket before `end` into the weights, in order."""
        for bucket in sorted(b for b in self.pending if b < end):
            self._add(self.pending.pop(bucket), bucket)
            self.folded_buckets += 1
        if self.folded_until is None or end > self.folded_until:
            self.folded_until = end

    def _add(self, views: list[tuple[np.ndarray, np.ndarray]], bucket: int) -> None:
        """Add one bucket's views (IP keys, product slots) to the weights, each IP's counting
        at most IP_VIEWS_CAP in all: a scraper's thousand views weigh what a keen shopper's
        do."""
        ip_of, ips = _encoded(np.concatenate([ips for ips, _ in views]))
        slots = np.concatenate([slots for _, slots in views])
        weight = np.minimum(1.0, IP_VIEWS_CAP / np.bincount(ip_of, minlength=len(ips)))[ip_of]
        counts = np.bincount(slots, weights=weight, minlength=len(self.weights))
        self.folded_views += float(weight.sum())
        factor = self._factor(bucket)
        self.weights += counts * factor

    def _factor(self, bucket: int) -> float:
        """The weight of one view of `bucket`, relative to the others (exp(bucket / decay))."""
        exponent = (bucket - self.scale_origin) / DECAY_BUCKETS
        if exponent > RESCALE_AT:
            self.weights *= np.exp(-exponent)
            self.scale_origin = bucket
            exponent = 0.0
        return float(np.exp(exponent))

    def _snapshot(self, refresh: int) -> np.ndarray | None:
        """The popularity per slot at the refresh at bucket `refresh` (made of the buckets
        before it; None before enough views are known)."""
        if refresh in self.snapshots:
            return self.snapshots[refresh]
        if self.folded_until is not None and self.folded_until > refresh:
            return None  # an event far later than its bucket: its baseline is gone
        viewed = self.weights > 0
        if self.folded_buckets < READY_BUCKETS or not viewed.any():
            return None
        if self.folded_views < READY_VIEWS_PER_PRODUCT * np.count_nonzero(viewed):
            return None
        # The share of the viewed products viewed less (never viewed: 0).
        snapshot = np.zeros(len(self.weights), np.float32)
        snapshot[viewed] = _products_below(self.weights[viewed]) / np.count_nonzero(viewed)
        self.snapshots[refresh] = snapshot
        for old in sorted(self.snapshots)[:-KEEP_SNAPSHOTS]:
            del self.snapshots[old]
        return snapshot

    # checkpoints -------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], pa.Table, pa.Table]:
        """What a checkpoint keeps: (numbers, the weights per product, the pending views)."""
        pending = [
            (bucket, ips, slots) for bucket, parts in self.pending.items() for ips, slots in parts
        ]
        views = pa.table(
            {
                "bucket": pa.array(_joined([np.full(len(i), b) for b, i, _ in pending], np.int64)),
                "ip_key": pa.array(_joined([i for _, i, _ in pending], np.uint64)),
                "product_id": pa.array(self.ids[_joined([s for _, _, s in pending], np.int64)]),
            }
        )
        numbers = {
            "folded_until": self.folded_until,
            "folded_buckets": self.folded_buckets,
            "folded_views": self.folded_views,
            "scale_origin": self.scale_origin,
        }
        return numbers, pa.table({"product_id": self.ids, "weight": self.weights}), views

    @classmethod
    def from_state(
        cls, numbers: dict[str, Any], weights: pa.Table, views: pa.Table
    ) -> ProductPopularity:
        """A memory from `state()`. Snapshots are not kept: they are rebuilt from the same
        weights."""
        memory = cls(
            slot_of=IdSlots.of(weights["product_id"].to_numpy()),
            weights=weights["weight"].to_numpy().copy(),
            folded_until=numbers["folded_until"],
            folded_buckets=int(numbers["folded_buckets"]),
            folded_views=float(numbers.get("folded_views", 0.0)),
            scale_origin=int(numbers["scale_origin"]),
        )
        if "folded_views" not in numbers:  # a checkpoint before views were counted: as ready
            memory.folded_views = READY_VIEWS_PER_PRODUCT * np.count_nonzero(memory.weights > 0)
        buckets = views["bucket"].to_numpy()
        ips = views["ip_key"].to_numpy()
        slots = memory._slots(views["product_id"].combine_chunks())
        memory.pending = {
            bucket: [(ips[buckets == bucket].copy(), slots[buckets == bucket])]
            for bucket in _distinct(buckets)
        }
        return memory


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)


def _refresh_of(buckets: np.ndarray) -> np.ndarray:
    """The refresh an event of each bucket sees: the latest hour boundary at least
    LAG_BUCKETS - 1 buckets before it (its ranks hold the buckets before that boundary)."""
    return (buckets - LAG_BUCKETS + 1) // REFRESH_BUCKETS * REFRESH_BUCKETS


def _products_below(weights: np.ndarray) -> np.ndarray:
    """How many weights are below each one (ties share the lower rank): one sort, each run of
    equal weights taking the position of its first (so the sort need not be stable: several
    times faster than a stable one on float64)."""
    order = np.argsort(weights)
    ordered = weights[order]
    starts = np.ones(len(ordered), bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    below = np.empty(len(ordered), np.int64)
    below[order] = np.maximum.accumulate(np.where(starts, np.arange(len(ordered)), 0))
    return below


def _encoded(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each value in the distinct values, the distinct values): a hash pass, several
    times faster than sorting them (`np.unique`)."""
    encoded = pa.array(values).dictionary_encode()
    return encoded.indices.to_numpy(), encoded.dictionary.to_numpy()


def _distinct(values: np.ndarray) -> list[int]:
    """The distinct values, ascending (a batch holds a few buckets: hashing beats sorting)."""
    return sorted(int(value) for value in pc.unique(values).to_pylist())


def _first_appearances(values: np.ndarray) -> np.ndarray:
    """The distinct values in order of first appearance."""
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]
