"""What detection must reach on the evasive scenario (`simulate --attacks --scenario evasive`),
file or live: one place for the suite's assertions and `bench evasive`'s verdicts."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ecomwatch.detect.evaluate import Score
from ecomwatch.simulate.evasive import EVASIVE_LEGIT_KINDS

MIN_PRECISION = 0.95
MIN_RECALL = {
    "rotating_scraper": 0.9,
    "human_slow_scraper": 0.6,
    "ipv6_rotator": 0.8,
    "card_tester": 0.8,
    "distributed_hoarder": 0.5,
    "residential_botnet": 0.5,
    "low_rate_flood": 0.5,
    "spoofed_crawler": 1.0,
}
MAX_ORDINARY_SHARE = 0.001  # ordinary visitors flagged, of all ordinary visitors
MAX_FLOOD_DELAY_S = 60.0  # the flood named after its onset, in event time


def misses(score: Score, ordinary_ips: int) -> list[str]:
    """Each target the score does not meet, said plainly; none when all are met.
    `ordinary_ips`: the scenario's unlabelled (ordinary) addresses."""
    kinds = score.per_kind
    missed = []
    if score.precision < MIN_PRECISION:
        missed.append(f"precision {score.precision:.3f} < {MIN_PRECISION}")
    for kind, least in MIN_RECALL.items():
        recall = kinds[kind]["recall"]
        if recall is None or recall < least:
            missed.append(f"{kind} recall {recall} < {least}")
    for kind in EVASIVE_LEGIT_KINDS:
        if kinds[kind]["flagged"]:
            missed.append(f"{kind}: {kinds[kind]['flagged']} flagged")
    flagged_ordinary = kinds["normal"]["flagged"]
    if flagged_ordinary > MAX_ORDINARY_SHARE * ordinary_ips:
        missed.append(f"{flagged_ordinary} of {ordinary_ips} ordinary visitors flagged")
    if score.flood_delay_s is None or score.flood_delay_s > MAX_FLOOD_DELAY_S:
        missed.append(f"flood named after {score.flood_delay_s} s")
    for crowd, alarms in (
        ("flash sale", score.high_global_alarms_in_flash_sale),
        ("marketing spike", score.high_global_alarms_in_marketing_spike),
    ):
        if alarms:
            missed.append(f"{alarms} high shop-wide alarms in the {crowd}")
    return missed


def ordinary_ips(events: pa.Table, labels: dict[str, Any]) -> int:
    """Addresses in the events that no label names: the scenario's ordinary visitors."""
    ips = set(events.column("ip").drop_null().unique().to_pylist())
    return len(ips - set(labels["ips"]))
