"""Closing windows feeds each baseline rule's state: per key, the events, windows and funnel
events of every window the watermark has closed — whatever the rules share in one aggregation
(`flood`'s 10 s windows summed into `traffic-surge`'s minutes) and however the input is batched."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ecomwatch.detect.detector import Detector
from ecomwatch.detect.evaluate import micro_batches
from ecomwatch.detect.rules import KeyKind, load_rules
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import as_typed_table

LATENESS_US = 5_000_000
KEYS = {KeyKind.GLOBAL: "'*'", KeyKind.CATEGORY: "CAST(category_id AS VARCHAR)"}


@pytest.fixture(scope="module")
def traffic() -> pa.Table:
    return as_typed_table(pa.concat_tables(generate(TrafficSpec(events=10_000, seed=5, days=0.05))))


def expected(traffic: pa.Table, watermark_us: int) -> dict[tuple[str, str], list[float]]:
    """Each baseline rule's closed windows, counted straight from the events."""
    con = duckdb.connect()
    con.register("events", traffic)
    out = {}
    for rule in load_rules():
        if "baseline" not in rule.features and "baseline_funnel" not in rule.features:
            continue
        assert rule.filter_sql in ("TRUE", "(CAST((web_flags & 2) <> 0 AS INTEGER) = 0)")
        window_us = rule.window_s * 1_000_000
        rows = con.execute(
            f"SELECT {KEYS[rule.spec.key]} AS key, count(*), count(*) FILTER "
            "(event_type IN ('cart', 'purchase')) FROM events "
            f"WHERE epoch_us(event_time) // {window_us} * {window_us} + {window_us} "
            f"<= {watermark_us} AND {KEYS[rule.spec.key]} IS NOT NULL "
            f"GROUP BY key, epoch_us(event_time) // {window_us}"
        ).fetchall()
        for key, events, funnel in rows:
            total = out.setdefault((rule.name, key), [0.0, 0.0, 0.0])
            total[0] += events
            total[1] += 1
            total[2] += funnel
    return out


@pytest.mark.parametrize("batch_s", [120.0, 300.0])
def test_baselines_hold_every_closed_window_whatever_the_batching(traffic, batch_s):
    detector = Detector(load_rules(), judge_rows=0)
    watermark_us = 0
    for batch in micro_batches(traffic, batch_s):
        latest = int(pc.max(batch["event_time"]).cast(pa.int64()).as_py())
        watermark_us = latest - LATENESS_US
        detector.process(batch, watermark_us)
    assert {"flood", "traffic-surge", "category-swarm"} <= {r for r, _ in detector.baselines}
    assert detector.baselines == expected(traffic, watermark_us)
