"""`ecomwatch bench judging`: what a judging round of the rules costs, alone and beside a busy
Python thread.

The live service judges every micro-batch, and a round's cost is nearly fixed: a few DuckDB
queries over small tables (three or four for all rules, `Detector._evaluate`; a dozen and more,
one or two per rule, before 2026-12-01). DuckDB reads the registered Arrow tables through Python and
takes the GIL back many times a query, so a thread that keeps the GIL busy (the collector's
decoding, in a service) stretches a round far beyond its CPU time; this is why the service
judges in a process of its own (`serve/detector_process.py`). Simulated traffic is fed to a
`Detector` in batches, judging every batch, first alone, then with one pure-Python thread
spinning beside it; the figures are mean milliseconds per batch (its projection and its round;
the round is nearly all of it).
"""

from __future__ import annotations

import threading
import time

import pyarrow as pa

from ecomwatch.detect.detector import Detector
from ecomwatch.detect.rules import Rule
from ecomwatch.engine.watermark import Watermark
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import as_typed_table


def _spin(stop: threading.Event) -> None:
    count = 0
    while not stop.is_set():
        for i in range(10_000):
            count += i


def _batch_ms(events: pa.Table, rules: list[Rule], batch: int) -> tuple[float, int]:
    """Mean wall time of a batch (its projection, then its judging round), and the batches."""
    detector = Detector(rules, judge_rows=0, keep_alerts=False, behind=lambda: False)
    watermark = Watermark(lateness_s=300, idle_timeout_s=10)
    spent, batches = 0.0, 0
    for offset in range(0, events.num_rows, batch):
        part = events.slice(offset, batch)
        watermark.observe(part["event_time"])
        started = time.perf_counter()
        detector.process(part, watermark.current())  # judge_rows=0: every batch is judged
        spent += time.perf_counter() - started
        batches += 1
    return 1000 * spent / max(1, batches), batches


def run_judging_bench(*, events: int, batch: int, rules: list[Rule], seed: int = 1) -> dict:
    traffic = as_typed_table(pa.concat_tables(generate(TrafficSpec(events=events, seed=seed))))
    alone, rounds = _batch_ms(traffic, rules, batch)
    stop = threading.Event()
    spinner = threading.Thread(target=_spin, args=(stop,), daemon=True)
    spinner.start()
    try:
        beside, _ = _batch_ms(traffic, rules, batch)
    finally:
        stop.set()
        spinner.join()
    return {
        "events": traffic.num_rows,
        "batch": batch,
        "rounds": rounds,
        "batch_ms_alone": round(alone, 1),
        "batch_ms_beside_a_busy_thread": round(beside, 1),
        "slowdown": round(beside / alone, 2) if alone else None,
    }
