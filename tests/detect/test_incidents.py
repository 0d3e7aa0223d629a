"""Correlating alerts into incidents: what links, merges, resolves and reopens; the same
partition whatever the arrival order; the state through a checkpoint."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from ecomwatch.detect.alert import iso
from ecomwatch.detect.correlate import Correlator
from ecomwatch.detect.incident_log import final_incident, latest_records

T0 = datetime(2019, 11, 1, 12, 0, tzinfo=UTC)
MINUTE = 60_000_000


def alert(
    alert_id: str,
    rule: str,
    entity_type: str,
    entity: str,
    *,
    at_min: float,
    lasting_min: float = 1,
    severity: str = "high",
    ips: tuple[str, ...] = (),
    group: dict[str, str] | None = None,
    members: int | None = None,
    count: int = 10,
) -> dict[str, Any]:
    start = T0 + timedelta(minutes=at_min)
    evidence: dict[str, Any] = {"events": count}
    if members is not None:
        evidence["members"] = members
    return {
        "alert_id": alert_id,
        "rule": rule,
        "severity": severity,
        "entity_type": entity_type,
        "entity": entity,
        "window_start": iso(start),
        "first_seen": iso(start),
        "last_seen": iso(start + timedelta(minutes=lasting_min)),
        "detected_at": iso(start + timedelta(minutes=lasting_min)),
        "count": count,
        "evidence": evidence,
        "explanation": f"{entity} matched {rule}",
        "labels": [rule.split("-")[0]],
        "ips": list(ips) or ([entity] if entity_type == "ip" else []),
        "group": group,
    }


def now_of(a: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(a["detected_at"].replace("Z", "+00:00")).timestamp() * 1e6)


def correlate(alerts: list[dict[str, Any]], **settings: float) -> tuple[Correlator, list[dict]]:
    correlator = Correlator(**settings)
    records = []
    for a in alerts:
        a["incident_id"] = correlator.add(a, now_of(a))
        records += correlator.changed()
    return correlator, records


def partition(alerts: list[dict[str, Any]], records: list[dict]) -> set[frozenset[str]]:
    latest = latest_records(records)
    groups: dict[str, set[str]] = {}
    for a in alerts:
        groups.setdefault(final_incident(a["incident_id"], latest), set()).add(a["alert_id"])
    return {frozenset(g) for g in groups.values()}


BOTNET = {"entity_type": "user_agent", "entity": "EvilBot/1.0"}


def campaign_alerts() -> list[dict[str, Any]]:
    """A botnet (group alert + members), the same IPs by a second rule, a lone scraper, a
    scraper alerted twice an hour apart, a sale's surge, and a session tying two IPs."""
    members = [f"198.51.100.{n}" for n in range(5)]
    return [
        alert("g", "botnet-user-agent", "user_agent", "EvilBot/1.0", at_min=0, members=5),
        *[
            alert(f"m{n}", "botnet-user-agent", "ip", ip, at_min=0.5, group=BOTNET)
            for n, ip in enumerate(members)
        ],
        alert("x0", "declared-bot", "ip", members[0], at_min=3),
        alert("s1", "fast-scraper", "ip", "203.0.113.7", at_min=2),
        alert("s2", "fast-scraper", "ip", "203.0.113.8", at_min=10),
        alert("s2b", "fast-scraper", "ip", "203.0.113.8", at_min=80),
        alert("surge", "traffic-surge", "global", "shop", at_min=1, severity="low"),
        alert("a", "cart-abuse", "ip", "192.0.2.1", at_min=30),
        alert("b", "cart-abuse", "ip", "192.0.2.2", at_min=31),
        alert("ab", "cart-abuse", "session", "sess-1", at_min=32, ips=("192.0.2.1", "192.0.2.2")),
    ]


def test_campaigns_link_and_unrelated_alerts_do_not():
    alerts = campaign_alerts()
    _, records = correlate(alerts)
    groups = partition(alerts, records)
    assert frozenset({"g", "m0", "m1", "m2", "m3", "m4", "x0"}) in groups  # group + same IP
    assert frozenset({"a", "b", "ab"}) in groups  # the session merged two incidents
    for lone in ("s1", "s2", "s2b", "surge"):  # an hour apart, unrelated, shop-wide
        assert frozenset({lone}) in groups
    assert len(groups) == 6


def test_a_merged_incident_points_at_the_one_that_absorbed_it():
    alerts = campaign_alerts()
    _, records = correlate(alerts)
    latest = latest_records(records)
    first, second = (a["incident_id"] for a in alerts if a["alert_id"] in ("a", "b"))
    assert first != second
    assert latest[second]["state"] == "merged" and latest[second]["merged_into"] == first
    survivor = latest[first]
    assert survivor["alerts"] == 3 and survivor["ip_count"] == 2
    assert survivor["rules"] == {"cart-abuse": 3}


def test_the_record_names_the_campaign_by_its_group_alert():
    alerts = campaign_alerts()
    _, records = correlate(alerts)
    record = latest_records(records)[alerts[0]["incident_id"]]
    assert record["lead_alert"] == "g"
    assert record["title"].startswith("Botnet: 5 IPs, ")
    assert record["severity"] == "high" and record["state"] == "open"
    assert record["rules"] == {"botnet-user-agent": 6, "declared-bot": 1}
    # Members' events, each IP once at its largest count (the group's own count is not added).
    assert record["events"] == 50


def test_an_incident_resolves_when_quiet_and_reopens_when_it_flares():
    correlator = Correlator(link_gap_s=900, quiet_s=1800, horizon_s=3600)
    first = alert("f1", "fast-scraper", "ip", "203.0.113.9", at_min=0)
    incident = correlator.add(first, now_of(first))
    correlator.advance(now_of(first) + 20 * MINUTE)
    assert latest_records(correlator.changed())[incident]["state"] == "open"
    correlator.advance(now_of(first) + 31 * MINUTE)
    resolved = latest_records(correlator.changed())[incident]
    assert resolved["state"] == "resolved" and resolved["resolved_at"] is not None
    # Resolved but still linkable: an alert of the same IP within the gap reopens it.
    again = alert("f2", "declared-bot", "ip", "203.0.113.9", at_min=12)
    assert correlator.add(again, now_of(first) + 32 * MINUTE) == incident
    reopened = latest_records(correlator.changed())[incident]
    assert reopened["state"] == "open" and reopened["resolved_at"] is None
    assert reopened["alerts"] == 2


def test_repeated_alerts_of_one_rule_link_across_its_cooldown_and_no_further():
    first = alert("r1", "fast-scraper", "ip", "203.0.113.9", at_min=0)
    after_cooldown = alert("r2", "fast-scraper", "ip", "203.0.113.9", at_min=40)
    other_rule = alert("r3", "declared-bot", "ip", "203.0.113.9", at_min=41)
    much_later = alert("r4", "fast-scraper", "ip", "203.0.113.9", at_min=90)
    cooldowns = {"fast-scraper": 1800, "declared-bot": 3600}
    # 40 minutes apart: beyond the 15-minute gap, within it plus the 30-minute cooldown.
    _, records = correlate([first, after_cooldown, other_rule, much_later], cooldowns_s=cooldowns)
    latest = latest_records(records)
    ids = [final_incident(a["incident_id"], latest) for a in (first, after_cooldown, other_rule)]
    assert len(set(ids)) == 1
    # 90 minutes: 48 minutes after the last alert's span, more than 15 + 30.
    assert final_incident(much_later["incident_id"], latest) != ids[0]
    # Without the cooldowns, the first alert is alone.
    again = [dict(a) for a in (first, after_cooldown)]
    _, records = correlate(again)
    assert again[0]["incident_id"] != again[1]["incident_id"]


def test_an_entity_still_at_it_under_its_cooldown_keeps_the_incident_open():
    correlator = Correlator(link_gap_s=900, quiet_s=1800, horizon_s=3600)
    first = alert("f1", "fast-scraper", "ip", "203.0.113.9", at_min=0)
    incident = correlator.add(first, now_of(first))
    # A window the cooldown held 20 minutes later: quiet counts from its last event.
    correlator.active("f1", now_of(first) + 20 * MINUTE)
    correlator.advance(now_of(first) + 45 * MINUTE)
    assert correlator.incidents[incident].state.value == "open"
    correlator.advance(now_of(first) + 51 * MINUTE)
    assert correlator.incidents[incident].state.value == "resolved"
    # Held windows after it resolved do not reopen it (only an alert does); unknown ids pass.
    correlator.active("f1", now_of(first) + 60 * MINUTE)
    correlator.active("never-raised", now_of(first) + 60 * MINUTE)
    assert correlator.incidents[incident].state.value == "resolved"


def test_finished_incidents_are_forgotten_and_a_later_alert_opens_a_new_one():
    correlator = Correlator(link_gap_s=900, quiet_s=1800, horizon_s=3600)
    first = alert("f1", "fast-scraper", "ip", "203.0.113.9", at_min=0)
    incident = correlator.add(first, now_of(first))
    for minutes in (40, 200, 201):  # resolve, then drop what nothing can link to
        correlator.advance(now_of(first) + minutes * MINUTE)
        correlator.changed()
    assert incident not in correlator.incidents and not correlator.segments
    later = alert("f3", "fast-scraper", "ip", "203.0.113.9", at_min=205)
    assert correlator.add(later, now_of(later)) != incident


def test_an_escalation_stays_in_its_incident_and_raises_its_severity():
    correlator = Correlator()
    first = alert("e", "fast-scraper", "ip", "203.0.113.5", at_min=0)
    incident = correlator.add(first, now_of(first))
    worse = {**first, "severity": "critical", "escalated_from": "high"}
    assert correlator.add(worse, now_of(first) + MINUTE) == incident
    record = latest_records(correlator.changed())[incident]
    assert record["severity"] == "critical" and record["alerts"] == 1


def test_the_partition_does_not_depend_on_arrival_order():
    alerts = campaign_alerts()
    _, records = correlate(alerts)
    expected = partition(alerts, records)
    shuffler = random.Random(7)
    for _ in range(20):
        shuffled = [dict(a) for a in alerts]
        shuffler.shuffle(shuffled)
        _, records = correlate(shuffled)
        assert partition(shuffled, records) == expected


def test_the_state_survives_a_checkpoint():
    alerts = campaign_alerts()
    _, uninterrupted = correlate(alerts)
    copies = [dict(a) for a in alerts]
    before, records = correlate(copies[:7])
    state = json.loads(json.dumps(before.snapshot()))  # as a checkpoint stores it
    after = Correlator()
    after.restore(state)
    for a in copies[7:]:
        a["incident_id"] = after.add(a, now_of(a))
        records += after.changed()
    assert partition(copies, records) == partition(alerts, uninterrupted)


def test_only_the_lead_alert_is_kept_whole():
    alerts = campaign_alerts()
    correlator, records = correlate(alerts)
    for state in correlator.snapshot()["incidents"]:
        whole = [a["alert_id"] for a in state["alerts"] if "explanation" in a]
        assert whole == ([state["lead_id"]] if state["alerts"] else [])
    latest = latest_records(records)
    botnet = latest[final_incident(alerts[0]["incident_id"], latest)]
    assert botnet["lead_alert"] == "g"
    assert botnet["explanation"] == "EvilBot/1.0 matched botnet-user-agent"
    assert botnet["evidence"] == {"events": 10, "members": 5}


def test_a_shop_wide_notice_naming_sample_ips_holds_no_campaign():
    """Scoring counts the IPs an alert flags: a surge notice lists ten of the shop's IPs as a
    sample, which neither splits their campaign nor mixes the notice's incident."""
    from ecomwatch.detect.incident_scores import score_incidents

    botnet = [f"198.51.100.{n}" for n in range(5)]
    alerts = [
        alert("g", "botnet-user-agent", "user_agent", "EvilBot/1.0", at_min=0, members=5),
        *[
            alert(f"m{n}", "botnet-user-agent", "ip", ip, at_min=0.5, group=BOTNET)
            for n, ip in enumerate(botnet)
        ],
        alert("s", "fast-scraper", "ip", "203.0.113.7", at_min=2),
        alert(
            "surge",
            "traffic-surge",
            "global",
            "*",
            at_min=1,
            severity="info",
            ips=(botnet[0], "203.0.113.7", "192.0.2.50"),
        ),
    ]
    _, records = correlate(alerts)
    labels = {
        "kinds": {"attack": ["botnet", "fast_scraper"]},
        "ips": {**dict.fromkeys(botnet, "botnet"), "203.0.113.7": "fast_scraper"},
        "campaigns": dict.fromkeys(botnet, "botnet#1"),
    }
    score = score_incidents(alerts, records, labels)
    assert score.incidents == 3  # the botnet, the scraper, the notice
    assert score.campaigns_alerted == 2 and score.campaigns_in_one == 2
    assert score.mixed_incidents == 0


def test_one_message_naming_two_incidents_of_a_campaign_counts_once_for_it():
    """A botnet on two /24s is two incidents until something links them; announced together,
    that is one message about the campaign, not one per incident it names."""
    from ecomwatch.detect.incident_scores import score_incidents

    alerts, ips = [], {}
    for subnet in ("198.51.100", "203.0.113"):
        group = {"entity_type": "subnet", "entity": subnet}
        alerts.append(alert(subnet, "botnet-subnet", "subnet", subnet, at_min=0, members=2))
        for n in range(2):
            ip = f"{subnet}.{n}"
            ips[ip] = "botnet"
            alerts.append(alert(ip, "botnet-subnet", "ip", ip, at_min=0.5, group=group))
    _, records = correlate(alerts)
    incidents = sorted({r["incident_id"] for r in records})
    assert len(incidents) == 2
    messages = [
        {"type": "incidents.opened", "incidents": [{"incident_id": i} for i in incidents]},
        *[{"type": "incident.resolved", "incident": {"incident_id": i}} for i in incidents],
    ]
    labels = {"kinds": {"attack": ["botnet"]}, "ips": ips, "campaigns": dict.fromkeys(ips, "b#1")}
    score = score_incidents(alerts, records, labels, messages)
    assert score.messages == 3
    assert score.most_messages_per_campaign == 3  # the opening once, two resolutions
