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
- before an hour of views is known, popularity is unknown (null) and no rule reads it.

An address counts as one visitor: its views in a bucket add at most 20 to the counts (shared
between the products it viewed), so a scraper walking the whole catalogue does not lift the
long tail. Counts are held per product id in two NumPy arrays sorted by id; each bucket's
views are grouped once (by hashing: Arrow's dictionary encoding) and merged in, and events
find their products' ranks through Arrow's hash lookup, so a batch costs what its products cost.
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
READY_BUCKETS = 6  # popularity is known once an hour of views is folded
KEEP_SNAPSHOTS = 3  # rank tables kept for the latest refreshes (late events reuse them)
IP_VIEWS_CAP = 20  # views an IP adds to a bucket's counts at most (scrapers count as one visitor)
RESCALE_AT = 500.0  # exponent past which the weights are scaled back (float64 stays finite)


@dataclass
class ProductPopularity:
    """The decayed, capped view counts per product and the hourly ranks made of them."""

    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    folded_until: int | None = None  # buckets before this one are in `weights`
    folded_buckets: int = 0  # how many buckets with views were folded
    scale_origin: int = 0  # bucket whose weight factor is 1
    # bucket → the (IP keys, product ids) of its views, not folded yet
    pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    # refresh bucket → (product ids, ranks): what the events after that refresh see
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
        refreshes = _refresh_of(buckets)
        for refresh in _distinct(refreshes):
            self._fold_before(int(refresh))
            snapshot = self._snapshot(int(refresh))
            rows = np.flatnonzero((refreshes == refresh) & has_product)
            if snapshot is not None and len(rows):
                out[rows] = _look_up(snapshot, ids[rows])
        return pa.array(out, pa.float32(), mask=np.isnan(out))

    def _note(self, buckets: np.ndarray, ips: np.ndarray, ids: np.ndarray) -> None:
        """Add views to their buckets' pending views (or, for a bucket already folded — an
        event later than a bucket's length — straight into the weights)."""
        for bucket in _distinct(buckets):
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
        """Add weighted counts of (sorted, unique) ids; new products are inserted in place
        (new arrays: a snapshot keeps the id array it was made from)."""
        at = np.searchsorted(self.ids, ids)
        known = at < len(self.ids)
        known[known] = self.ids[at[known]] == ids[known]
        if not known.all():
            new = ids[~known]
            where = np.searchsorted(self.ids, new)
            self.ids = np.insert(self.ids, where, new)
            self.weights = np.insert(self.weights, where, 0.0)
            at = np.searchsorted(self.ids, ids)
        self.weights[at] += counts * factor  # ids are unique: no index repeats

    def _snapshot(self, refresh: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The ranks of the refresh at bucket `refresh` (made of the buckets before it; None
        before enough views are known)."""
        if refresh in self.snapshots:
            return self.snapshots[refresh]
        if self.folded_until is not None and self.folded_until > refresh:
            return None  # an event far later than its bucket: its baseline is gone
        if self.folded_buckets < READY_BUCKETS or not len(self.ids):
            return None
        ordered = np.sort(self.weights)
        less = np.searchsorted(ordered, self.weights, side="left")  # ties share the lower rank
        snapshot = (self.ids, (less / len(ordered)).astype(np.float32))
        self.snapshots[refresh] = snapshot
        for old in sorted(self.snapshots)[:-KEEP_SNAPSHOTS]:
            del self.snapshots[old]
        return snapshot

    # checkpoints -------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], pa.Table, pa.Table]:
        """What a checkpoint keeps: (numbers, the weights per product, the pending views)."""
        pending = [
            (bucket, ips, ids) for bucket, parts in self.pending.items() for ips, ids in parts
        ]
        views = pa.table(
            {
                "bucket": pa.array(_joined([np.full(len(i), b) for b, i, _ in pending], np.int64)),
                "ip_key": pa.array(_joined([i for _, i, _ in pending], np.uint64)),
                "product_id": pa.array(_joined([p for _, _, p in pending], np.int64)),
            }
        )
        numbers = {
            "folded_until": self.folded_until,
            "folded_buckets": self.folded_buckets,
            "scale_origin": self.scale_origin,
        }
        return numbers, pa.table({"product_id": self.ids, "weight": self.weights}), views

    @classmethod
    def from_state(
        cls, numbers: dict[str, Any], weights: pa.Table, views: pa.Table
    ) -> ProductPopularity:
        """A memory from `state()`. Snapshots are not kept: they are rebuilt from the same
        weights."""
        buckets = views["bucket"].to_numpy()
        ips, ids = views["ip_key"].to_numpy(), views["product_id"].to_numpy()
        return cls(
            ids=weights["product_id"].to_numpy().copy(),
            weights=weights["weight"].to_numpy().copy(),
            folded_until=numbers["folded_until"],
            folded_buckets=int(numbers["folded_buckets"]),
            scale_origin=int(numbers["scale_origin"]),
            pending={
                int(b): [(ips[buckets == b].copy(), ids[buckets == b].copy())]
                for b in np.unique(buckets)
            },
        )


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)


def _refresh_of(buckets: np.ndarray) -> np.ndarray:
    """The refresh an event of each bucket sees: the latest hour boundary at least
    LAG_BUCKETS - 1 buckets before it (its ranks hold the buckets before that boundary)."""
    return (buckets - LAG_BUCKETS + 1) // REFRESH_BUCKETS * REFRESH_BUCKETS


def _capped_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Views per product (sorted ids, counts) of one bucket, an IP's views counting at most
    IP_VIEWS_CAP in all: a scraper's thousand views weigh what a keen shopper's do."""
    ip_of, ips = _encoded(np.concatenate([p[0] for p in parts]))
    product_of, ids = _encoded(np.concatenate([p[1] for p in parts]))
    weight = np.minimum(1.0, IP_VIEWS_CAP / np.bincount(ip_of, minlength=len(ips)))[ip_of]
    counts = np.bincount(product_of, weights=weight, minlength=len(ids))
    order = np.argsort(ids)
    return ids[order], counts[order]


def _distinct(values: np.ndarray) -> list[int]:
    """The distinct values, ascending (a batch holds a few buckets: hashing beats sorting)."""
    return sorted(pc.unique(values).to_pylist())


def _encoded(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each value in the distinct values, the distinct values): a hash pass, several
    times faster than sorting them (`np.unique`)."""
    encoded = pa.array(values).dictionary_encode()
    return encoded.indices.to_numpy(), encoded.dictionary.to_numpy()


def _look_up(snapshot: tuple[np.ndarray, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """Popularity of each id (0 for a product not viewed in the baseline)."""
    known, popularity = snapshot
    at = pc.index_in(ids, value_set=pa.array(known)).fill_null(len(known))
    return np.append(popularity, np.float32(0))[at.to_numpy()]
