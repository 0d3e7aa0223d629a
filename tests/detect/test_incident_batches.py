"""The grouping of a scenario's campaigns into incidents whatever the micro-batch size: the
alerts themselves may come sooner or later (early firing), but which campaigns share an
incident, and how many incidents each spans, stay the same."""

from __future__ import annotations

from collections import defaultdict

from ecomwatch.detect.evaluate import run_detector
from ecomwatch.detect.incident_log import final_incident, latest_records
from ecomwatch.detect.incident_scores import score_incidents
from ecomwatch.detect.rules import load_rules
from ecomwatch.simulate.attacks import AttackScenario
from ecomwatch.simulate.traffic import TrafficSpec
from ecomwatch.simulate.writers import as_typed_table


def campaign_groups(alerts: list[dict], records: list[dict], labels: dict) -> set[frozenset]:
    """The attack campaigns, grouped by the incidents their IPs' alerts ended up in."""
    latest = latest_records(records)
    attack = set(labels["kinds"]["attack"])
    together: dict[str, set[str]] = defaultdict(set)
    for alert in alerts:
        ips = list(alert.get("ips") or []) + (
            [alert["entity"]] if alert["entity_type"] == "ip" else []
        )
        for ip in ips:
            if labels["ips"].get(ip) in attack and "members" not in alert["evidence"]:
                campaign = labels.get("campaigns", {}).get(ip, ip)
                together[final_incident(alert["incident_id"], latest)].add(campaign)
    return {frozenset(c) for c in together.values()}


def test_the_grouping_holds_whatever_the_batch_size():
    raw, labels = AttackScenario(TrafficSpec(events=10_000, seed=3, days=0.04)).build()
    events = as_typed_table(raw)
    rules = load_rules()
    groups, scores = {}, {}
    for batch_s in (10.0, 60.0):
        alerts, records = run_detector(events, rules, batch_s=batch_s)
        lines = [a.to_json() for a in alerts]
        groups[batch_s] = campaign_groups(lines, records, labels)
        scores[batch_s] = score_incidents(lines, records, labels)
    assert groups[10.0] == groups[60.0]
    assert len(groups[10.0]) >= 5  # several campaigns, alerted at either size
    for score in scores.values():
        assert score.legitimate_flagging_incidents == 0
        assert score.most_incidents_per_campaign == scores[10.0].most_incidents_per_campaign
