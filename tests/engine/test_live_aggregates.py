"""Live per-minute aggregates: a batch spanning many minutes is counted, not called late;
an event for a window the watermark had already closed is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ecomwatch.operators.live_aggregates import TrafficAggregates
from ecomwatch.testing import events_table

START = datetime(2019, 11, 1, tzinfo=UTC)


def rows(minutes: range, kind: str = "view") -> list[dict]:
    return [
        {
            "event_time": START + timedelta(minutes=m, seconds=5),
            "event_type": kind,
            "price": 2.5,
            "product_id": 1,
            "user_id": 1,
            "user_session": "s",
            "source": "t",
            "source_pos": m,
        }
        for m in minutes
    ]


def test_a_long_batch_is_counted_and_only_truly_late_events_are_late():
    agg = TrafficAggregates()
    batch = events_table(rows(range(30)))
    watermark = int((START + timedelta(minutes=25)).timestamp() * 1e6)  # after the batch
    agg.process(batch, watermark)
    assert sum(m["events"] for m in agg.minutes()) == 30 and agg.late_events == 0
    agg.process(events_table(rows(range(2), "purchase")), watermark)  # minutes 0-1 closed
    assert agg.late_events == 2
    agg.process(events_table(rows(range(28, 29), "purchase")), watermark)  # still open
    assert agg.late_events == 2
    minute_28 = next(m for m in agg.minutes() if m["minute_us"] // 60_000_000 % 60 == 28)
    assert minute_28["purchase"] == 1 and minute_28["revenue"] == 2.5
