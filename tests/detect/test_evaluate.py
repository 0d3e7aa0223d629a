"""The evaluation on a small labelled scenario, with the issue's thresholds asserted, beside
the WAF rate rule (which flags the office NAT and misses slow and rotating bots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecomwatch.config import Config
from ecomwatch.detect.evaluate import evaluate, read_all
from ecomwatch.detect.rules import load_rules
from ecomwatch.ingest import open_inputs
from ecomwatch.simulate.attacks import AttackScenario, in_chunks
from ecomwatch.simulate.traffic import TrafficSpec
from ecomwatch.simulate.writers import write_traffic


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    # Written to CSV and read back through the decoder, as `ecomwatch evaluate` does.
    events, labels = AttackScenario(TrafficSpec(events=30_000, seed=11, days=1.5 / 24)).build()
    path = tmp_path_factory.mktemp("scenario") / "attacks.csv"
    write_traffic(in_chunks(events), path)
    sources, errors = open_inputs([path], Config())
    assert not errors
    ours, waf, alerts = evaluate(read_all(sources), labels, load_rules(), batch_s=15)
    return ours, waf, alerts


def test_detection_meets_the_bar(scored):
    ours, _, _ = scored
    kinds = ours.per_kind
    assert ours.precision >= 0.95
    assert kinds["fast_scraper"]["recall"] >= 0.95
    assert kinds["cart_abuser"]["recall"] >= 0.95
    assert kinds["low_and_slow"]["recall"] >= 0.8
    assert kinds["botnet"]["recall"] >= 0.7
    assert kinds["flood"]["recall"] >= 0.8
    assert kinds["nat_office"]["flagged"] == 0
    assert ours.high_global_alarms_in_flash_sale == 0
    assert ours.flood_delay_s is not None and ours.flood_delay_s <= 30


def test_alerts_are_grouped_into_campaign_incidents(scored):
    ours, _, alerts = scored
    grouping = ours.incidents
    assert grouping is not None and all(a.incident_id for a in alerts)
    assert grouping.incidents <= len(alerts) / 20  # campaigns, not one line per alert
    assert grouping.campaigns_in_one >= 0.8 * grouping.campaigns_alerted
    assert grouping.most_incidents_per_campaign <= 2
    assert grouping.legitimate_flagging_incidents == 0


def test_the_waf_rule_flags_the_office_and_misses_slow_and_rotating_bots(scored):
    _, waf, _ = scored
    assert waf.per_kind["nat_office"]["flagged"] == 1
    assert waf.per_kind["low_and_slow"]["recall"] == 0
    assert waf.per_kind["botnet"]["recall"] < 0.1


def test_every_flagging_alert_is_explained_with_its_evidence(scored):
    _, _, alerts = scored
    flagging = [a for a in alerts if a.severity.rank >= 2]
    assert flagging
    for alert in flagging:
        assert alert.evidence and alert.explanation and alert.ips
        assert alert.entity in alert.explanation


def test_scenario_labels_cover_every_kind(tmp_path: Path):
    _, labels = AttackScenario(TrafficSpec(events=5_000, seed=2, days=1.2 / 24)).build()
    present = set(labels["ips"].values())
    assert present == set(labels["kinds"]["attack"]) | set(labels["kinds"]["legitimate"])


def test_micro_batches_cut_from_the_first_event_or_at_epoch_multiples():
    import pyarrow as pa

    from ecomwatch.detect.evaluate import micro_batches

    seconds = [12, 13, 19, 21, 30, 31, 44]
    events = pa.table(
        {"event_time": pa.array([s * 1_000_000 for s in seconds], pa.timestamp("us", tz="UTC"))}
    )

    def starts(batches):
        return [int(b["event_time"][0].value) // 1_000_000 for b in batches]

    assert starts(micro_batches(events, 10)) == [12, 30, 44]  # 12-22, 22-32, 42-52
    assert starts(micro_batches(events, 10, aligned=True)) == [12, 21, 30, 44]  # 10-20, 20-30…
    assert sum(b.num_rows for b in micro_batches(events, 10, aligned=True)) == len(seconds)
