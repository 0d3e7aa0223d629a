"""The evasive scenario (attackers who rotate identities, spread out or look human, and traps
that look like attacks), written to CSV and scored as `ecomwatch evaluate` scores it, with
the thresholds of the issue asserted for every kind."""

from __future__ import annotations

import pytest

from ecomwatch.config import Config
from ecomwatch.detect.evaluate import evaluate, read_all
from ecomwatch.detect.rules import load_rules
from ecomwatch.ingest import open_inputs
from ecomwatch.simulate.attacks import in_chunks
from ecomwatch.simulate.evasive import EVASIVE_LEGIT_KINDS, EvasiveScenario
from ecomwatch.simulate.traffic import TrafficSpec
from ecomwatch.simulate.writers import write_traffic


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    spec = TrafficSpec(events=60_000, seed=5, days=3 / 24)
    events, labels = EvasiveScenario(spec).build()
    path = tmp_path_factory.mktemp("evasive") / "evasive.csv"
    write_traffic(in_chunks(events), path)
    sources, errors = open_inputs([path], Config())
    assert not errors
    ours, waf, _ = evaluate(read_all(sources), labels, load_rules(), batch_s=30)
    return ours, waf


def test_evasive_attackers_are_caught(scored):
    ours, _ = scored
    kinds = ours.per_kind
    assert ours.precision >= 0.95
    assert kinds["rotating_scraper"]["recall"] >= 0.9
    assert kinds["human_slow_scraper"]["recall"] >= 0.6
    assert kinds["ipv6_rotator"]["recall"] >= 0.8
    assert kinds["card_tester"]["recall"] >= 0.8
    assert kinds["distributed_hoarder"]["recall"] >= 0.5
    assert kinds["residential_botnet"]["recall"] >= 0.5
    assert kinds["low_rate_flood"]["recall"] >= 0.5
    assert kinds["spoofed_crawler"]["recall"] == 1.0
    assert ours.flood_delay_s is not None and ours.flood_delay_s <= 60


def test_look_alikes_stay_quiet(scored):
    ours, _ = scored
    for kind in EVASIVE_LEGIT_KINDS:
        assert ours.per_kind[kind]["flagged"] == 0, kind
    assert ours.high_global_alarms_in_marketing_spike == 0
    assert ours.high_global_alarms_in_flash_sale == 0


def test_the_waf_rule_misses_what_hides_below_its_rate(scored):
    _, waf = scored
    for kind in ("human_slow_scraper", "ipv6_rotator", "card_tester", "distributed_hoarder"):
        assert waf.per_kind[kind]["recall"] == 0, kind
