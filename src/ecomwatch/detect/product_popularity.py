"""How popular each product is, for the `popularity` and `longtail_share` features.

A product's popularity is the share of the shop's products viewed less than it over about the
past day (0: the least viewed, or never; near 1: the hits). Views are shoppers' views: not
those of declared bots and crawlers. A rank, not a ratio to the average, because scrapers that
walk the whole catalogue lift every product alike: they change how often the long tail is
viewed, not that it is the long tail. A residential botnet or a low-rate flood spread over
long-tail products looks, visitor by visitor, like new shoppers; what gives them away is that
their views fall on products almost no one views. Measuring that needs a baseline the attack
cannot move, so popularity lags:

- views are counted in 10-minute buckets of event time;
- an event of bucket B sees the counts of buckets up to B - 2 (10 to 20 minutes old), summed
  with an exponential decay of one day, so a flood's own views reach the baseline only after
  it has been judged;
- an event's popularity depends only on the events before its bucket, never on how the input
  was batched (events later than a bucket's length are folded into later baselines only);
- before 30 minutes of views are known, popularity is unknown (null) and no rule reads it.

An address counts as one visitor: its views in a bucket add at most 20 to the counts (shared
between the products it viewed), so a scraper walking the whole catalogue does not lift the
long tail. Counts are held per product id in two NumPy arrays sorted by id; each bucket's
views are grouped once and merged in, so a batch costs what its products cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BUCKET_US = 600 * 1_000_000  # views are counted per 10 minutes of event time
LAG_BUCKETS = 2  # an event of bucket B sees buckets up to B - 2
DECAY_BUCKETS = 144.0  # weights fall by e every day (144 buckets)
READY_BUCKETS = 3  # popularity is known once this many buckets of views are folded
KEEP_SNAPSHOTS = 6  # popularity tables kept for the latest buckets (late events reuse them)
IP_VIEWS_CAP = 20  # views an IP adds to a bucket's counts at most (scrapers count as one visitor)
RESCALE_AT = 500.0  # exponent past which the weights are scaled back (float64 stays finite)


@dataclass
class ProductPopularity:
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    folded_until: int | None = None  # buckets before this one are in `weights`
    folded_buckets: int = 0  # how many buckets with views were folded
    scale_origin: int = 0  # bucket whose weight factor is 1
    # bucket → the (IP keys, product ids) of its views, not folded yet
    pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    # bucket → (product ids, popularity): what the events of that bucket see
    snapshots: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def popularity(
        self, product_id: pa.Array, times_us: pa.Array, ip_key: pa.Array, counted: pa.Array
    ) -> pa.Array:
        """Each event's product popularity (float32; null when not known yet or no product),
        noting the batch's `counted` views (a shopper's, not a declared bot's) for the buckets
        after theirs."""
        buckets = pc.divide(times_us, BUCKET_US).to_numpy(zero_copy_only=False)
        ids = product_id.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        has_product = product_id.is_valid().to_numpy(zero_copy_only=False)
        # The batch's own views count first: an event sees those of earlier buckets too.
        views = counted.fill_null(False).to_numpy(zero_copy_only=False) & has_product
        ips = ip_key.fill_null(0).to_numpy(zero_copy_only=False).astype(np.uint64)
        self._note(buckets[views], ips[views], ids[views])
        out = np.full(len(ids), np.nan, np.float32)
        for bucket in np.unique(buckets):
            self._fold_before(int(bucket) - LAG_BUCKETS + 1)
            snapshot = self._snapshot(int(bucket))
            rows = np.flatnonzero((buckets == bucket) & has_product)
            if snapshot is not None and len(rows):
                out[rows] = _look_up(snapshot, ids[rows])
        return pa.array(out, pa.float32(), mask=np.isnan(out))

    def _note(self, buckets: np.ndarray, ips: np.ndarray, ids: np.ndarray) -> None:
        """Add views to their buckets' pending views (or, for a bucket already folded — an
        event later than a bucket's length — straight into the weights)."""
        for bucket in np.unique(buckets):
            mine = buckets == bucket
            number = int(bucket)
            if self.folded_until is not None and number < self.folded_until:
                self._merge(*_capped_counts([(ips[mine], ids[mine])]), self._factor(number))
                continue
            self.pending.setdefault(number, []).append((ips[mine], ids[mine]))

    def _fold_before(self, end: int) -> None:
        """Fold every pending bucket before `end` into the weights, in order."""
        for bucket in sorted(b for b in self.pending if b < end):
            self._merge(*_capped_counts(self.pending.pop(bucket)), self._factor(bucket))
            self.folded_buckets += 1
        if self.folded_until is None or end > self.folded_until:
            self.folded_until = end

    def _factor(self, bucket: int) -> float:
        """The weight of one view of `bucket`, relative to the others (exp(bucket / decay))."""
        exponent = (bucket - self.scale_origin) / DECAY_BUCKETS
        if exponent > RESCALE_AT:
            self.weights *= np.exp(-exponent)
            self.scale_origin = bucket
            exponent = 0.0
        return float(np.exp(exponent))

    def _merge(self, ids: np.ndarray, counts: np.ndarray, factor: float) -> None:
        """Add weighted counts of (sorted, unique) ids; the arrays are rebuilt only when new
        products appear (a snapshot keeps the id array it was made from)."""
        at = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        known = (at < len(self.ids)) & (self.ids[at] == ids) if len(self.ids) else at < 0
        if known.all():
            self.weights[at] += counts * factor  # ids are unique: no index repeats
            return
        merged_ids = np.union1d(self.ids, ids)
        weights = np.zeros(len(merged_ids), np.float64)
        weights[np.searchsorted(merged_ids, self.ids)] = self.weights
        weights[np.searchsorted(merged_ids, ids)] += counts * factor
        self.ids, self.weights = merged_ids, weights

    def _snapshot(self, bucket: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The popularity events of `bucket` see (None before enough views are known)."""
        if bucket in self.snapshots:
            return self.snapshots[bucket]
        if self.folded_until is not None and self.folded_until > bucket - LAG_BUCKETS + 1:
            return None  # an event far later than its bucket: its baseline is gone
        if self.folded_buckets < READY_BUCKETS or not len(self.ids):
            return None
        ordered = np.sort(self.weights)
        less = np.searchsorted(ordered, self.weights, side="left")  # ties share the lower rank
        snapshot = (self.ids, (less / len(ordered)).astype(np.float32))
        self.snapshots[bucket] = snapshot
        for old in sorted(self.snapshots)[:-KEEP_SNAPSHOTS]:
            del self.snapshots[old]
        return snapshot

    # checkpoints -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "ids": self.ids.tolist(),
            "weights": self.weights.tolist(),
            "folded_until": self.folded_until,
            "folded_buckets": self.folded_buckets,
            "scale_origin": self.scale_origin,
            "pending": [
                [b, [[ips.tolist(), ids.tolist()] for ips, ids in parts]]
                for b, parts in self.pending.items()
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ProductPopularity:
        """A memory from `state()` (an empty one for checkpoints written before it existed).
        Snapshots are not kept: they are rebuilt from the same weights."""
        if not state:
            return cls()
        return cls(
            ids=np.array(state["ids"], np.int64),
            weights=np.array(state["weights"], np.float64),
            folded_until=state["folded_until"],
            folded_buckets=int(state["folded_buckets"]),
            scale_origin=int(state["scale_origin"]),
            pending={
                int(b): [(np.array(ips, np.uint64), np.array(ids, np.int64)) for ips, ids in parts]
                for b, parts in state["pending"]
            },
        )


def _capped_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Views per product (sorted ids, counts) of one bucket, an IP's views counting at most
    IP_VIEWS_CAP in all: a scraper's thousand views weigh what a keen shopper's do."""
    ips = np.concatenate([p[0] for p in parts])
    ids = np.concatenate([p[1] for p in parts])
    _, ip_of, per_ip = np.unique(ips, return_inverse=True, return_counts=True)
    weight = np.minimum(1.0, IP_VIEWS_CAP / per_ip)[ip_of]
    unique, product_of = np.unique(ids, return_inverse=True)
    return unique, np.bincount(product_of, weights=weight, minlength=len(unique))


def _look_up(snapshot: tuple[np.ndarray, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """Popularity of each id (0 for a product not viewed in the baseline)."""
    known, popularity = snapshot
    if not len(known):
        return np.zeros(len(ids), np.float32)
    at = np.minimum(np.searchsorted(known, ids), len(known) - 1)
    return np.where(known[at] == ids, popularity[at], np.float32(0))
