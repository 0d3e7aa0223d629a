"""The evasive scenario (attackers who rotate identities, spread out or look human, and traps
that look like attacks), written to CSV and scored as `ecomwatch evaluate` scores it, with
the thresholds of the issue asserted for every kind."""

from __future__ import annotations

import pytest

from ecomwatch.config import Config
from ecomwatch.detect.evaluate import evaluate, read_all
from ecomwatch.detect.evasive_targets import misses, ordinary_ips
from ecomwatch.detect.rules import load_rules
from ecomwatch.ingest import open_inputs
from ecomwatch.simulate.attacks import in_chunks
from ecomwatch.simulate.evasive import EvasiveScenario
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
    events = read_all(sources)
    ours, waf, _ = evaluate(events, labels, load_rules(), batch_s=30)
    return ours, waf, ordinary_ips(events, labels)


def test_every_target_is_met(scored):
    """Precision, each kind's recall, the traps and crowds quiet, the flood named in time
    (`detect/evasive_targets.py`, which `bench evasive` checks too)."""
    ours, _, ordinary = scored
    assert misses(ours, ordinary) == []
    assert ours.high_global_alarms_in_marketing_spike == 0  # the scenario has one: not None


def test_the_waf_rule_misses_what_hides_below_its_rate(scored):
    _, waf, _ = scored
    for kind in ("human_slow_scraper", "ipv6_rotator", "card_tester", "distributed_hoarder"):
        assert waf.per_kind[kind]["recall"] == 0, kind
