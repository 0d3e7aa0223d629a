"""`ecomwatch bench judging` judges every batch twice over: alone, and beside a thread that keeps
the GIL busy — which must cost more (the reason the service judges in a process of its own)."""

from __future__ import annotations

from ecomwatch.benchmarks.judging_bench import run_judging_bench
from ecomwatch.detect.rules import load_rules


def test_every_batch_is_a_round_and_a_busy_thread_slows_the_rounds():
    figures = run_judging_bench(events=10_000, batch=5_000, rules=load_rules())
    assert figures["events"] == 10_000 and figures["rounds"] == 2
    assert 0 < figures["batch_ms_alone"] < figures["batch_ms_beside_a_busy_thread"]
