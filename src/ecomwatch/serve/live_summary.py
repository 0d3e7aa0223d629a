"""Live dashboard figures the lake report does not give per second: active sessions, top
categories, brands and products, revenue, and the traffic from flagged IPs (its share, and
per minute for the dashboard's flagged-vs-unflagged chart).

Runs as the pipeline's last operators' neighbour; `published` is a fresh dict after each batch,
so API threads read a consistent copy while the pipeline thread goes on.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

ACTIVE_SESSION_S = 300  # a session is active if it had an event in the last five minutes
TOP = 10
FLAGGED_MINUTES = 180  # the per-minute flagged counts kept (the chart shows the last 120)
MINUTE_US = 60_000_000


class LiveSummary:
    name = "live_summary"

    def __init__(self, flagged_ips: Callable[[], frozenset[str]]) -> None:
        self.flagged_ips = flagged_ips
        self.last_seen: dict[str, int] = {}  # session → its latest event time (µs)
        self.categories: Counter[str] = Counter()
        self.brands: Counter[str] = Counter()
        self.products: Counter[int] = Counter()
        self.events = 0
        self.flagged_events = 0
        self.flagged_minutes: dict[int, int] = {}  # minute start (µs) → events from flagged IPs
        # Events counted before their IP was flagged (written by the alerts' thread only).
        self.flagged_earlier = 0
        self._published_earlier = 0
        # … and their spans (events, first µs, last µs), spread over minutes by the pipeline.
        self._earlier_spans: deque[tuple[int, int, int]] = deque()
        self.revenue = 0.0
        self.latest_us = 0
        self.published: dict[str, Any] = self._publish()

    def count_flagged_earlier(self, events: int, first_us: int, last_us: int) -> None:
        """A newly flagged IP's events that went by before its alert came, between `first_us`
        and `last_us`: in the per-minute counts they are spread evenly over those minutes."""
        self.flagged_earlier += events
        self._earlier_spans.append((events, first_us, last_us))

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        while self._earlier_spans:
            self._spread(*self._earlier_spans.popleft())
        if not events.num_rows:
            if self.flagged_earlier != self._published_earlier:  # an idle tick: show it
                self.published = self._publish()
            return
        self.events += events.num_rows
        self._count(self.categories, events["category_code"])
        self._count(self.brands, events["brand"])
        self._count(self.products, events["product_id"])
        purchases = pc.equal(events["event_type"].cast(pa.string()), "purchase")
        self.revenue += pc.sum(pc.if_else(purchases, events["price"], 0.0)).as_py() or 0.0
        flagged = self.flagged_ips()
        if flagged:
            hits = pc.is_in(events["ip"].cast(pa.string()), pa.array(sorted(flagged)))
            self.flagged_events += int(pc.sum(hits).as_py() or 0)
            self._count_minutes(events["event_time"].filter(hits))
        latest = events.group_by("user_session").aggregate([("event_time", "max")])
        times = latest["event_time_max"].cast(pa.int64()).to_pylist()
        for session, when in zip(latest["user_session"].to_pylist(), times, strict=True):
            if when > self.last_seen.get(session, 0):
                self.last_seen[session] = when
        self.latest_us = max(self.latest_us, max(times))
        horizon = self.latest_us - ACTIVE_SESSION_S * 1_000_000
        if len(self.last_seen) > 10_000:
            self.last_seen = {s: t for s, t in self.last_seen.items() if t >= horizon}
        self.published = self._publish()

    def _count_minutes(self, times: pa.ChunkedArray) -> None:
        if not len(times):
            return
        minutes = pc.value_counts(pc.divide(times.cast(pa.int64()), MINUTE_US))
        for item in minutes.to_pylist():
            self._add_minute(int(item["values"]) * MINUTE_US, item["counts"])

    def _spread(self, events: int, first_us: int, last_us: int) -> None:
        starts = range(first_us // MINUTE_US * MINUTE_US, last_us + 1, MINUTE_US)
        share, extra = divmod(events, len(starts))
        for number, start in enumerate(starts[-FLAGGED_MINUTES:]):
            self._add_minute(start, share + (1 if number < extra else 0))

    def _add_minute(self, start: int, events: int) -> None:
        self.flagged_minutes[start] = self.flagged_minutes.get(start, 0) + events
        if len(self.flagged_minutes) > FLAGGED_MINUTES:
            for oldest in sorted(self.flagged_minutes)[:-FLAGGED_MINUTES]:
                del self.flagged_minutes[oldest]

    @staticmethod
    def _count(counter: Counter[Any], column: pa.ChunkedArray) -> None:
        counts = pc.value_counts(
            column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column
        )
        for item in counts.to_pylist():
            if item["values"] is not None:
                counter[item["values"]] += item["counts"]

    def _publish(self) -> dict[str, Any]:
        horizon = self.latest_us - ACTIVE_SESSION_S * 1_000_000
        self._published_earlier = self.flagged_earlier
        flagged = min(self.events, self.flagged_events + self._published_earlier)
        return {
            "events": self.events,
            "latest_event_us": self.latest_us or None,
            "revenue": round(self.revenue, 2),
            "active_sessions": sum(1 for t in self.last_seen.values() if t >= horizon),
            "flagged_events": flagged,
            "flagged_share": round(flagged / self.events, 4) if self.events else 0.0,
            "flagged_minutes": dict(self.flagged_minutes),
            "top_categories": [
                {"name": k, "events": v} for k, v in self.categories.most_common(TOP)
            ],
            "top_brands": [{"name": k, "events": v} for k, v in self.brands.most_common(TOP)],
            "top_products": [
                {"name": str(k), "events": v} for k, v in self.products.most_common(TOP)
            ],
        }

    def snapshot(self) -> dict[str, Any]:
        return {}  # live figures restart with the service; the lake keeps the history

    def restore(self, state: dict[str, Any]) -> None:
        return None
