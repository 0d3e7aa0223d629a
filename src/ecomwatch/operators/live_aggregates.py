"""Live traffic aggregates: per-minute counts by event type and revenue, in event time.

Windows are one minute long and close when the watermark passes their end; closed windows are
kept for `retention_minutes` (the dashboard's history) and older ones are evicted, so the state
is bounded by time, not by input size. Events for a window that already closed are counted as
late (they are still in the lake).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.schema import EVENT_TYPES

MINUTE_US = 60_000_000
_FIELDS = ("events", *EVENT_TYPES, "revenue")
_PURCHASE = EVENT_TYPES.index("purchase")


def _type_codes(column: pa.ChunkedArray) -> np.ndarray:
    """Event types as indexes into EVENT_TYPES, from the dictionary without decoding it."""
    codes = []
    for chunk in column.chunks:
        mapping = np.array([EVENT_TYPES.index(v) for v in chunk.dictionary.to_pylist()], np.int64)
        codes.append(mapping[chunk.indices.to_numpy(zero_copy_only=False)])
    return np.concatenate(codes) if codes else np.empty(0, np.int64)


class TrafficAggregates:
    name = "traffic"

    def __init__(self, *, retention_minutes: int = 24 * 60) -> None:
        self.retention_minutes = retention_minutes
        self.open: dict[int, dict[str, float]] = {}
        self.closed: dict[int, dict[str, float]] = {}
        self.late_events = 0
        self._watermark_us: int | None = None

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        if events.num_rows == 0:
            self._close(watermark_us)
            return
        minute = events["event_time"].cast(pa.int64()).to_numpy() // MINUTE_US
        kind = _type_codes(events["event_type"])
        price = pc.fill_null(events["price"], 0.0).to_numpy()  # a web log's purchase has none
        combined = minute * len(EVENT_TYPES) + kind
        low = int(combined.min())
        if int(combined.max()) - low < 1 << 16:  # the usual few minutes: count densely
            offsets = combined - low
            counts = np.bincount(offsets)
            revenue = np.bincount(offsets, weights=np.where(kind == _PURCHASE, price, 0.0))
            present = np.flatnonzero(counts)
            keys, counts, revenue = present + low, counts[present], revenue[present]
        else:
            keys, inverse = np.unique(combined, return_inverse=True)
            counts = np.bincount(inverse)
            revenue = np.bincount(inverse, weights=np.where(kind == _PURCHASE, price, 0.0))
        # Late: a window the watermark had passed before this batch (the watermark given here
        # already counts this batch's own events, which may span many minutes).
        before = self._watermark_us
        for key, count, rev in zip(keys.tolist(), counts.tolist(), revenue.tolist(), strict=True):
            start = (key // len(EVENT_TYPES)) * MINUTE_US
            late_window = before is not None and start + MINUTE_US <= before
            if start in self.closed or (late_window and start not in self.open):
                self.late_events += count
                continue
            window = self.open.setdefault(start, dict.fromkeys(_FIELDS, 0))
            window["events"] += count
            window[EVENT_TYPES[key % len(EVENT_TYPES)]] += count
            window["revenue"] += rev
        self._close(watermark_us)

    def _close(self, watermark_us: int | None) -> None:
        if watermark_us is None:
            return
        self._watermark_us = watermark_us
        for start in [s for s in self.open if s + MINUTE_US <= watermark_us]:
            self.closed[start] = self.open.pop(start)
        horizon = watermark_us - self.retention_minutes * MINUTE_US
        for start in [s for s in self.closed if s < horizon]:
            del self.closed[start]

    def minutes(self) -> list[dict[str, Any]]:
        """All retained windows, oldest first, closed and open."""
        merged = {**self.closed, **self.open}
        return [{"minute_us": s, **merged[s]} for s in sorted(merged)]

    def snapshot(self) -> dict[str, Any]:
        return {
            "open": {str(k): v for k, v in self.open.items()},
            "closed": {str(k): v for k, v in self.closed.items()},
            "late_events": self.late_events,
            "watermark_us": self._watermark_us,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.open = {int(k): v for k, v in state.get("open", {}).items()}
        self.closed = {int(k): v for k, v in state.get("closed", {}).items()}
        self.late_events = int(state.get("late_events", 0))
        self._watermark_us = state.get("watermark_us")
