"""Live traffic aggregates: per-minute counts by event type and revenue, in event time.

Windows are one minute long and close when the watermark passes their end; closed windows are
kept for `retention_minutes` (the dashboard's history) and older ones are evicted, so the state
is bounded by time, not by input size. Events for a window that already closed are counted as
late (they are still in the lake).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.schema import EVENT_TYPES

MINUTE_US = 60_000_000
_FIELDS = ("events", *EVENT_TYPES, "revenue")


class TrafficAggregates:
    name = "traffic"

    def __init__(self, *, retention_minutes: int = 24 * 60) -> None:
        self.retention_minutes = retention_minutes
        self.open: dict[int, dict[str, float]] = {}
        self.closed: dict[int, dict[str, float]] = {}
        self.late_events = 0

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        if events.num_rows == 0:
            return
        minute = pc.multiply(pc.divide(events["event_time"].cast(pa.int64()), MINUTE_US), MINUTE_US)
        revenue = pc.if_else(
            pc.equal(events["event_type"].cast(pa.string()), "purchase"), events["price"], 0.0
        )
        grouped = (
            pa.table(
                {"minute": minute, "type": events["event_type"].cast(pa.string()), "rev": revenue}
            )
            .group_by(["minute", "type"])
            .aggregate([("rev", "count"), ("rev", "sum")])
        )
        for start, kind, count, rev in zip(
            grouped["minute"].to_pylist(),
            grouped["type"].to_pylist(),
            grouped["rev_count"].to_pylist(),
            grouped["rev_sum"].to_pylist(),
            strict=True,
        ):
            if start in self.closed or (
                watermark_us is not None
                and start + MINUTE_US <= watermark_us
                and start not in self.open
            ):
                self.late_events += count
                continue
            window = self.open.setdefault(start, dict.fromkeys(_FIELDS, 0))
            window["events"] += count
            window[kind] += count
            window["revenue"] += rev
        self._close(watermark_us)

    def _close(self, watermark_us: int | None) -> None:
        if watermark_us is None:
            return
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
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.open = {int(k): v for k, v in state.get("open", {}).items()}
        self.closed = {int(k): v for k, v in state.get("closed", {}).items()}
        self.late_events = int(state.get("late_events", 0))
