"""An incident's record: what a person reads first about a campaign, built from its alerts.

The record is a JSON line like an alert's. Incident files (`<alerts>.incidents.jsonl`) are
append-only logs of these records: a line is written each time an incident changes, and the
latest line for an id is its current state.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Any

from ecomwatch.detect.alert import iso_us, parse_iso
from ecomwatch.detect.rules import Severity


class IncidentState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    MERGED = "merged"  # absorbed by an older incident: see `merged_into`


# A rule's first label names the kind of incident it leads.
KIND_NAMES = {
    "scraper": "Scraper",
    "bot": "Bot",
    "cart-abuse": "Cart abuse",
    "surge": "Traffic surge",
    "botnet": "Botnet",
    "ddos": "Flood",
}

SAMPLE_IPS = 20


def is_group_alert(alert: dict[str, Any]) -> bool:
    """A group rule's own alert (a subnet, user agent or the whole shop with members)."""
    return alert.get("group") is None and "members" in alert.get("evidence", {})


def lead_key(a: dict[str, Any]) -> tuple[bool, int, int, int, str, str]:
    """Which alert leads: the lowest key (see lead_alert)."""
    return (
        not is_group_alert(a),
        -Severity(a["severity"]).rank,
        -int(a["evidence"].get("members", 0)),
        -int(a["count"]),
        a["first_seen"],
        a["alert_id"],
    )


def lead_alert(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """The alert that best describes the incident: a group's own alert (a flood, a botnet)
    first, as it names the campaign; then the most severe; then the one with the most
    members, then events; then the earliest."""
    return min(alerts, key=lead_key)


def slim(alert: dict[str, Any]) -> dict[str, Any]:
    """What an incident keeps of an alert that does not lead it: all that its record and the
    choice of its lead need, without the evidence and the explanation (a flood's thousands of
    member alerts would otherwise fill every checkpoint)."""
    kept = {k: v for k, v in alert.items() if k not in ("evidence", "explanation")}
    members = alert.get("evidence", {}).get("members")
    kept["evidence"] = {"members": members} if members is not None else {}
    return kept


def flagged_ips(alert: dict[str, Any]) -> list[str]:
    """The IPs an alert flags: its entity when an IP, and the IPs behind a session's or a
    user's; a group's or the shop's own alert names only a sample of ten (its members' alerts
    flag them)."""
    ips = [] if is_group_alert(alert) or alert["entity_type"] == "global" else alert.get("ips", [])
    return [*ips, alert["entity"]] if alert["entity_type"] == "ip" else list(ips)


def incident_ips(alerts: list[dict[str, Any]]) -> list[str]:
    """The IPs behind its alerts (`flagged_ips`)."""
    return sorted({ip for a in alerts for ip in flagged_ips(a)})


def incident_events(alerts: list[dict[str, Any]]) -> int:
    """Events of the flagged entities in their alert windows: the largest count per entity,
    summed; a group's own alert counts only when the incident has nothing else."""
    counted = [a for a in alerts if not is_group_alert(a)] or alerts
    largest: dict[tuple[str, str], int] = {}
    for a in counted:
        entity = (a["entity_type"], a["entity"])
        largest[entity] = max(largest.get(entity, 0), int(a["count"]))
    return sum(largest.values())


def summarize(
    incident_id: str,
    alerts: list[dict[str, Any]],
    *,
    state: IncidentState,
    opened_us: int,
    updated_us: int,
    resolved_us: int | None,
    merged_into: str | None,
    reopened: int = 0,
    revision: int = 0,
    lead: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of an incident from its alerts (the latest line of each; `lead`, the one
    that leads, whole, when the caller keeps the others slim)."""
    record: dict[str, Any] = {
        "incident_id": incident_id,
        "state": state.value,
        "merged_into": merged_into,
        "opened_at": iso_us(opened_us),
        "updated_at": iso_us(updated_us),
        "resolved_at": iso_us(resolved_us) if resolved_us is not None else None,
        "reopened": reopened,
        "revision": revision,
    }
    if not alerts:  # merged: its alerts belong to `merged_into` now
        return {**record, "alerts": 0}
    lead = lead or lead_alert(alerts)
    ips = incident_ips(alerts)
    first = min(a["first_seen"] for a in alerts)
    last = max(a["last_seen"] for a in alerts)
    kind = lead["labels"][0] if lead["labels"] else lead["rule"]
    events = incident_events(alerts)
    return {
        **record,
        "title": _title(kind, lead, ips, events, first, last),
        "kind": kind,
        "severity": max((Severity(a["severity"]) for a in alerts), key=lambda s: s.rank).value,
        "first_seen": first,
        "last_seen": last,
        "alerts": len(alerts),
        "rules": dict(sorted(Counter(a["rule"] for a in alerts).items())),
        "entities": len({(a["entity_type"], a["entity"]) for a in alerts}),
        "ip_count": len(ips),
        "ips": ips[:SAMPLE_IPS],
        "events": events,
        "lead_alert": lead["alert_id"],
        "evidence": lead["evidence"],
        "explanation": lead["explanation"],
    }


def _title(
    kind: str, lead: dict[str, Any], ips: list[str], events: int, first: str, last: str
) -> str:
    """e.g. "Flood: 364 IPs, 10.1x baseline traffic, 20:43-20:59"."""
    parts = [f"{len(ips):,} IP{'s' if len(ips) != 1 else ''}" if ips else lead["entity"]]
    evidence = lead["evidence"]
    if evidence.get("baseline"):
        parts.append(f"{evidence['events'] / evidence['baseline']:.1f}x baseline traffic")
    else:
        parts.append(f"{events:,} events")
    span = f"{parse_iso(first):%H:%M}-{parse_iso(last):%H:%M}"
    return f"{KIND_NAMES.get(kind, kind.capitalize())}: {', '.join(parts)}, {span}"


def incidents_path_for(alerts: Path) -> Path:
    """`alerts.jsonl` → `alerts.incidents.jsonl`: the incidents log beside an alerts file."""
    stem = alerts.name[: -len(".jsonl")] if alerts.name.endswith(".jsonl") else alerts.name
    return alerts.with_name(stem + ".incidents.jsonl")
