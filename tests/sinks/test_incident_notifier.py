"""Notifications per incident: opened, escalated, resolved and reopened once each (the first
message after a wait that folds a campaign's first minute in, updates at most one per
interval), incidents of one kind announced together at their group's flushes, low ones in a
digest, merged ones silent, and Slack's payload."""

from __future__ import annotations

from ecomwatch.detect.rules import Severity
from ecomwatch.sinks.incident_notifier import IncidentNotifier


def record(ident: str = "i1", *, minute: int = 0, **changes) -> dict:
    base = {
        "incident_id": ident, "state": "open", "merged_into": None, "severity": "high",
        "title": f"Scraper: 1 IP ({ident})", "kind": "scraper",
        "first_seen": "2026-12-01T10:00:00Z",
        "last_seen": "2026-12-01T10:00:00Z",
        "updated_at": f"2026-12-01T{10 + minute // 60}:{minute % 60:02d}:00Z",
        "alerts": 1, "ip_count": 1, "ips": ["203.0.113.7"], "events": 80,
        "rules": {"fast-scraper": 1}, "explanation": "ip 203.0.113.7 walks the catalogue",
    }  # fmt: skip
    return {**base, **changes}


class Clock:
    """Wall time that moves only when told: the tests run on event time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def notifier(**options) -> tuple[IncidentNotifier, list[dict]]:
    sent: list[dict] = []
    return IncidentNotifier(sent.extend, **options), sent


def test_a_campaign_is_announced_when_it_opens_escalates_and_resolves():
    notify, sent = notifier()
    notify.records([record(minute=0)])
    assert sent == []  # the first minute of a campaign is folded into its first message
    notify.records([record(minute=1, alerts=40)])
    assert sent == []
    notify.records([record(minute=2, alerts=41)])  # the wait is over before this record
    assert [(m["type"], m["incident"]["alerts"]) for m in sent] == [("incident.opened", 40)]
    notify.records([record(minute=3, alerts=50, severity="critical")])
    notify.records([record(minute=6, alerts=55, severity="critical")])
    assert len(sent) == 1  # an update waits five minutes after the last message
    notify.records([record(minute=8, alerts=60, severity="critical")])
    assert sent[-1]["type"] == "incident.escalated" and sent[-1]["incident"]["alerts"] == 55
    notify.records([record(minute=40, state="resolved", severity="critical")])
    assert len(sent) == 2  # the resolution waits for its group's flush: minute 41
    notify.records([record(minute=42, state="resolved", severity="critical")])  # told already
    assert [m["type"] for m in sent] == [
        "incident.opened", "incident.escalated", "incident.resolved",
    ]  # fmt: skip
    notify.records([record(minute=90, state="open", severity="critical")])  # it flares again
    notify.close()  # the end of the run sends what waits
    assert sent[-1]["type"] == "incident.reopened"
    assert notify.sent == {"opened": 1, "escalated": 1, "resolved": 1, "reopened": 1}


def test_an_escalation_within_the_first_minute_and_a_merge_send_nothing_more():
    notify, sent = notifier()
    notify.records([record("a"), record("b", severity="medium")])
    notify.records([record("b", severity="high")])
    notify.records([record("b", state="merged", merged_into="a"), record("a", alerts=5)])
    notify.records([record("a", minute=2, alerts=6)])
    assert [(m["type"], m["incident"]["incident_id"]) for m in sent] == [("incident.opened", "a")]


def test_a_quiet_service_still_sends_in_wall_time():
    clock = Clock()
    notify, sent = notifier(clock=clock)
    notify.records([record()])
    notify.tick()
    assert sent == []
    clock.now = 61.0  # no more records: the wall clock ends the wait
    notify.tick()
    assert [m["type"] for m in sent] == ["incident.opened"]


def test_merged_incidents_are_silent_and_the_survivor_carries_on():
    notify, sent = notifier()
    notify.records([record("a"), record("b", kind="botnet")])
    notify.records([record("a", minute=1), record("b", minute=1, kind="botnet")])  # announced
    notify.records([record("b", minute=5, state="merged", merged_into="a"), record("a", minute=5)])
    notify.records([record("a", minute=40, state="resolved")])
    notify.close()
    assert [(m["type"], m["incident"]["incident_id"]) for m in sent] == [
        ("incident.opened", "a"), ("incident.opened", "b"), ("incident.resolved", "a"),
    ]  # fmt: skip


def test_incidents_of_one_kind_opening_together_are_one_message():
    notify, sent = notifier(link=lambda i: f"http://shop:8080/#/incident/{i}")
    botnet = {"kind": "botnet", "title": "Botnet: 7 IPs"}
    notify.records([record(f"subnet{n}", **botnet) for n in range(4)] + [record("scraper")])
    notify.records([record("scraper", minute=2)])  # all five fall due at once
    assert [m["type"] for m in sent] == ["incidents.opened", "incident.opened"]
    together = sent[0]
    assert together["count"] == 4 and {i["kind"] for i in together["incidents"]} == {"botnet"}
    assert together["incidents"][2]["url"] == "http://shop:8080/#/incident/subnet2"
    assert sent[1]["incident"]["incident_id"] == "scraper"
    assert notify.sent == {"opened": 2}
    # Each is its own incident after that: one resolves alone.
    notify.records([record("subnet1", minute=40, state="resolved", **botnet)])
    notify.records([record("scraper", minute=42)])  # past the botnets' flush at minute 41
    assert sent[-1]["type"] == "incident.resolved"
    assert sent[-1]["incident"]["incident_id"] == "subnet1"


def test_low_incidents_wait_for_a_digest_unless_they_rise():
    notify, sent = notifier(digest_s=3600)
    notify.records([record("low1", severity="low"), record("low2", severity="info")])
    notify.records([record("low3", minute=30, severity="low")])
    assert sent == []
    notify.records([record("low3", minute=31, severity="medium")])  # it rose: announced
    notify.records([record("low3", minute=33, severity="medium")])
    assert [m["type"] for m in sent] == ["incident.opened"]
    later = record("other", severity="low", updated_at="2026-12-01T11:05:00Z")
    notify.records([later])  # an hour after the first low one: the digest goes
    digest = sent[-1]
    assert digest["type"] == "incidents.digest" and digest["count"] == 3
    assert {i["incident_id"] for i in digest["incidents"]} == {"low1", "low2", "other"}
    notify.close()  # nothing left pending
    assert len(sent) == 2


def test_the_end_of_a_run_sends_the_pending_digest():
    notify, sent = notifier(min_severity=Severity.HIGH)
    notify.records([record(severity="medium")])
    notify.close()
    assert [m["type"] for m in sent] == ["incidents.digest"]


def test_slack_messages_carry_text_and_a_link():
    notify, sent = notifier(style="slack", link=lambda i: f"http://shop:8080/#/incident/{i}")
    notify.records([record()])
    notify.records([record(minute=1)])
    notify.records([record(minute=40, state="resolved")])
    notify.records([record("b", minute=50, kind="botnet"), record("c", minute=50, kind="botnet")])
    assert set(sent[0]) == {"text"}
    assert "*opened*: Scraper: 1 IP (i1) (high, 1 alerts)" in sent[0]["text"]
    assert "<http://shop:8080/#/incident/i1|i1>" in sent[0]["text"]
    assert "walks the catalogue" in sent[0]["text"] and "*resolved*" in sent[1]["text"]
    notify.close()
    assert sent[-1]["text"].splitlines()[0].endswith("*opened*: 2 botnet incidents")
    assert "<http://shop:8080/#/incident/c|c>" in sent[-1]["text"]


def test_incidents_of_one_kind_resolving_before_their_flush_are_one_message():
    notify, sent = notifier()
    botnet = {"kind": "botnet", "title": "Botnet: 7 IPs"}
    notify.records([record(f"subnet{n}", **botnet) for n in range(3)] + [record("scraper")])
    notify.records([record("scraper", minute=2)])  # all four announced
    del sent[:]
    quiet = {"minute": 40, "state": "resolved"}
    notify.records(
        [record("subnet0", **quiet, **botnet), record("scraper", **quiet)]
        + [record(f"subnet{n}", **quiet, **botnet) for n in (1, 2)]
    )
    assert sent == []  # each waits for its group's flush, at minute 41
    notify.close()
    assert [m["type"] for m in sent] == ["incidents.resolved", "incident.resolved"]
    assert [i["incident_id"] for i in sent[0]["incidents"]] == ["subnet0", "subnet1", "subnet2"]
    assert sent[0]["count"] == 3 and sent[1]["incident"]["incident_id"] == "scraper"
    assert notify.sent == {"opened": 2, "resolved": 2}


def test_slack_names_incidents_resolving_together_in_one_text():
    notify, sent = notifier(style="slack")
    botnet = {"kind": "botnet", "title": "Botnet: 7 IPs"}
    notify.records([record(f"subnet{n}", **botnet) for n in range(2)])
    notify.records([record(f"subnet{n}", minute=40, state="resolved", **botnet) for n in range(2)])
    notify.close()
    assert sent[-1]["text"].startswith(":white_check_mark: *resolved*: 2 botnet incidents")
    assert sent[-1]["text"].count("• Botnet: 7 IPs") == 2


def test_incidents_of_one_kind_appearing_minutes_apart_go_out_at_their_groups_flush():
    notify, sent = notifier()
    botnet = {"kind": "botnet", "title": "Botnet: 7 IPs"}
    notify.records([record("subnet0", **botnet)])  # the group's first flush: minute 1
    notify.records([record("subnet1", minute=3, **botnet)])
    notify.records([record("scraper", minute=4)])  # a kind of its own: flushed at minute 5
    notify.records([record("subnet2", minute=5, **botnet)])
    assert [m["type"] for m in sent] == ["incident.opened"]
    assert sent[0]["incident"]["incident_id"] == "subnet0"
    notify.records([record("scraper", minute=6, alerts=3)])  # before the botnets' flush at 6
    assert [m["incident"]["incident_id"] for m in sent] == ["subnet0", "scraper"]
    notify.records([record("scraper", minute=7, alerts=4)])
    assert sent[-1]["type"] == "incidents.opened"
    assert [i["incident_id"] for i in sent[-1]["incidents"]] == ["subnet1", "subnet2"]
    # Every botnet incident resolves at one flush (minute 36); the scraper stays open.
    notify.records([record(f"subnet{n}", minute=33, state="resolved", **botnet) for n in range(3)])
    notify.records([record("scraper", minute=37, alerts=5)])
    assert sent[-1]["type"] == "incidents.resolved" and sent[-1]["count"] == 3
    # The group has ended: the next botnet is a new group, announced after the group wait.
    notify.records([record("subnet9", minute=60, **botnet)])
    notify.records([record("scraper", minute=62, alerts=6)])
    assert sent[-1]["type"] == "incident.opened"
    assert sent[-1]["incident"]["incident_id"] == "subnet9"
    assert notify.sent == {"opened": 4, "resolved": 1}
