"""Correlating alerts into incidents: one campaign, one incident, every alert in exactly one.

Two alerts are linked when their spans (window start to last event) come within `link_gap_s`
of each other and they share a link key:

- the same IP (an IP alert's entity, and the IPs behind a session's or a group's alert);
- the same entity (repeated alerts of one session, user agent, subnet);
- the same group: the members a group rule flagged and the group's own alert.

Alerts of one rule about one entity (an IP, a session, a user; not a group or its members)
link across that rule's cooldown as well (within `link_gap_s` plus the cooldown): the rule
cannot alert again sooner, so a scraper still scraping an hour later is the same campaign, not
a new one each cooldown. Groups do not: a common user agent's group an hour later is as likely
another campaign's.

Incidents are the connected components of that relation, so which alerts share an incident
does not depend on the order they arrive in or on how the input was batched. When an alert
links two incidents, the older one (opened first) absorbs the newer, which is recorded as
`merged` into it. An incident resolves once `quiet_s` of event time pass without a new alert
and without a window that would have alerted but for its alert's cooldown (a scraper still
scraping under a 1-hour cooldown keeps its incident open), and reopens if an alert joins it
later. Info alerts (a sale's traffic surge) link only to alerts of their own rule and entity:
a surge must not glue unrelated attacks together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ecomwatch.detect.alert import parse_iso
from ecomwatch.detect.incident import (
    IncidentState,
    is_group_alert,
    lead_alert,
    lead_key,
    slim,
    summarize,
)
from ecomwatch.detect.rules import Severity


@dataclass
class _Incident:
    incident_id: str
    seq: int  # order of opening: the older incident absorbs the newer
    opened_us: int
    state: IncidentState = IncidentState.OPEN
    merged_into: str | None = None
    resolved_us: int | None = None
    updated_us: int = 0
    last_us: int = 0  # end of the latest alert's span
    reopened: int = 0  # times it flared again after resolving (an acknowledgement ends then)
    revision: int = 0  # records reported so far: a store keeps the highest
    # alert_id → its latest line: whole for the lead (`lead_id`), slim for the others
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    lead_id: str | None = None

    def to_state(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "seq": self.seq,
            "opened_us": self.opened_us,
            "state": self.state.value,
            "merged_into": self.merged_into,
            "resolved_us": self.resolved_us,
            "updated_us": self.updated_us,
            "last_us": self.last_us,
            "reopened": self.reopened,
            "revision": self.revision,
            "alerts": list(self.alerts.values()),
            "lead_id": self.lead_id,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Incident:
        return cls(
            incident_id=state["incident_id"],
            seq=state["seq"],
            opened_us=state["opened_us"],
            state=IncidentState(state["state"]),
            merged_into=state["merged_into"],
            resolved_us=state["resolved_us"],
            updated_us=state["updated_us"],
            last_us=state["last_us"],
            reopened=state.get("reopened", 0),
            revision=state.get("revision", 0),
            alerts={a["alert_id"]: a for a in state["alerts"]},
            lead_id=state.get("lead_id")
            or (lead_alert(state["alerts"])["alert_id"] if state["alerts"] else None),
        )

    def keep(self, alert: dict[str, Any]) -> None:
        """Hold an alert's latest line: whole if it leads now (the former lead is slimmed),
        slim if not."""
        lead = self.alerts.get(self.lead_id) if self.lead_id else None
        if lead is None or alert["alert_id"] == self.lead_id or lead_key(alert) < lead_key(lead):
            if lead is not None and alert["alert_id"] != self.lead_id:
                self.alerts[lead["alert_id"]] = slim(lead)
            self.alerts[alert["alert_id"]] = alert
            self.lead_id = alert["alert_id"]
        else:
            self.alerts[alert["alert_id"]] = slim(alert)


def _us(text: str) -> int:
    return int(parse_iso(text).timestamp() * 1_000_000)


def span_us(alert: dict[str, Any]) -> tuple[int, int]:
    """From the start of the window that raised the alert to its last event."""
    start = _us(alert.get("window_start") or alert["first_seen"])
    return min(start, _us(alert["first_seen"])), _us(alert["last_seen"])


def link_keys(alert: dict[str, Any]) -> list[str]:
    """What an alert can be linked by (see the module docstring). A shop-wide alert links by
    its group only: a flood and a sale's surge are both about the whole shop, which must not
    make them one incident; their members link them on. Another group's own alert (a subnet,
    a user agent, a category) links by the members it names too: when one botnet works two
    categories, its members' alerts are held by their cooldown after the first."""
    kind, entity = alert["entity_type"], alert["entity"]
    group = alert.get("group") or {"entity_type": kind, "entity": entity}
    keys = [f"group|{alert['rule']}|{group['entity_type']}|{group['entity']}"]
    if alert["severity"] == Severity.INFO.value or kind == "global":
        return keys
    if is_group_alert(alert):
        return keys + [f"ip|{ip}" for ip in sorted(alert.get("ips", ()))]
    keys.append(f"entity|{kind}|{entity}")
    ips = {*alert.get("ips", ()), *([entity] if kind == "ip" else [])}
    keys += [f"ip|{ip}" for ip in sorted(ips)]
    return keys


class Correlator:
    """Assigns each alert (as its JSON line) to an incident; reports incidents that changed."""

    def __init__(
        self,
        *,
        link_gap_s: float = 900,
        quiet_s: float = 1800,
        horizon_s: float = 3600,
        cooldowns_s: Mapping[str, float] | None = None,
    ) -> None:
        """`cooldowns_s`: each rule's cooldown (rule name → seconds), for linking its repeated
        alerts; a rule not named links them within `link_gap_s` only."""
        self.link_gap_us = int(link_gap_s * 1_000_000)
        self.rule_gap_us = {
            rule: self.link_gap_us + int(seconds * 1_000_000)
            for rule, seconds in (cooldowns_s or {}).items()
        }
        self.quiet_us = int(quiet_s * 1_000_000)
        # How far behind the watermark a new alert's window can start (the longest rule window
        # and the engine's lateness): link keys older than that, plus the gap, are dropped.
        self.horizon_us = int(horizon_s * 1_000_000)
        self.incidents: dict[str, _Incident] = {}
        self.of_alert: dict[str, str] = {}  # alert_id → the incident it joined first
        # link key → [start_us, end_us, incident_id] segments, one per incident per stretch
        self.segments: dict[str, list[list[Any]]] = {}
        self._seq = 0
        self._changed: set[str] = set()

    def root(self, incident_id: str) -> _Incident:
        """The incident an id stands for now (following merges)."""
        incident = self.incidents[incident_id]
        while incident.merged_into is not None:
            incident = self.incidents[incident.merged_into]
        return incident

    def add(self, alert: dict[str, Any], now_us: int) -> str:
        """Correlate one alert line (a new alert or an escalation); its incident's id."""
        alert_id = alert["alert_id"]
        start, end = span_us(alert)
        keys = link_keys(alert) + self._repeat_keys(alert)
        linked = {self.root(i).incident_id for i in self._near(keys, start, end)}
        known = self.of_alert.get(alert_id)
        if known is not None:
            linked.add(self.root(known).incident_id)
        if not linked:
            self._seq += 1
            incident_id = hashlib.sha1(f"incident|{alert_id}".encode()).hexdigest()[:16]
            incident = _Incident(incident_id, self._seq, now_us)
            self.incidents[incident_id] = incident
        else:
            survivors = sorted((self.incidents[i] for i in linked), key=lambda i: i.seq)
            incident = survivors[0]
            for absorbed in survivors[1:]:
                self._absorb(incident, absorbed, now_us)
        incident.keep(alert)
        incident.last_us = max(incident.last_us, end)
        incident.updated_us = now_us
        if incident.state is IncidentState.RESOLVED:
            incident.state, incident.resolved_us = IncidentState.OPEN, None
            incident.reopened += 1
        self.of_alert.setdefault(alert_id, incident.incident_id)
        for key in keys:
            self._extend(key, start, end, incident.incident_id)
        self._changed.add(incident.incident_id)
        return incident.incident_id

    def active(self, alert_id: str, end_us: int) -> None:
        """The entity of an alert is still at it (a window its cooldown held, up to `end_us`):
        its open incident is not quiet yet. This moves when the incident resolves, never which
        alerts share an incident (alerts alone decide that)."""
        known = self.of_alert.get(alert_id)
        if known is None:
            return
        incident = self.root(known)
        if incident.state is IncidentState.OPEN:
            incident.last_us = max(incident.last_us, end_us)

    def advance(self, watermark_us: int) -> None:
        """Resolve incidents quiet for `quiet_s`; drop what no new alert can link to."""
        for incident in self.incidents.values():
            if (
                incident.state is IncidentState.OPEN
                and incident.merged_into is None
                and incident.last_us + self.quiet_us <= watermark_us
            ):
                incident.state = IncidentState.RESOLVED
                resolved_us = max(watermark_us, incident.updated_us)
                incident.resolved_us = incident.updated_us = resolved_us
                self._changed.add(incident.incident_id)
        for key in list(self.segments):
            older_than = watermark_us - self.horizon_us - self._gap(key)
            kept = [s for s in self.segments[key] if s[1] >= older_than]
            if kept:
                self.segments[key] = kept
            else:
                del self.segments[key]
        # A resolved incident nothing can link to any more is finished: forget it (with the
        # incidents merged into it) once its last change has been reported.
        linkable = {self.root(s[2]).incident_id for segs in self.segments.values() for s in segs}
        finished = {
            i.incident_id
            for i in self.incidents.values()
            if i.state is IncidentState.RESOLVED
            and i.incident_id not in linkable
            and i.incident_id not in self._changed
        }
        doomed = [
            i for i in self.incidents.values() if self.root(i.incident_id).incident_id in finished
        ]
        for incident in doomed:
            for alert_id in incident.alerts:
                self.of_alert.pop(alert_id, None)
            self._changed.discard(incident.incident_id)
            del self.incidents[incident.incident_id]

    def changed(self) -> list[dict[str, Any]]:
        """The records of incidents that changed since the last call (latest state each)."""
        changed = [self.incidents[i] for i in sorted(self._changed) if i in self.incidents]
        for incident in changed:
            incident.revision += 1
        self._changed.clear()
        return [self.record(incident) for incident in changed]

    def records(self) -> list[dict[str, Any]]:
        """Every incident still held, merged ones included, oldest first."""
        return [self.record(i) for i in sorted(self.incidents.values(), key=lambda i: i.seq)]

    def record(self, incident: _Incident) -> dict[str, Any]:
        return summarize(
            incident.incident_id,
            list(incident.alerts.values()),
            state=incident.state,
            opened_us=incident.opened_us,
            updated_us=incident.updated_us,
            resolved_us=incident.resolved_us,
            merged_into=incident.merged_into,
            reopened=incident.reopened,
            revision=incident.revision,
            lead=incident.alerts.get(incident.lead_id) if incident.lead_id else None,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "incidents": [i.to_state() for i in self.incidents.values()],
            "of_alert": self.of_alert,
            "segments": self.segments,
            "seq": self._seq,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.incidents = {
            s["incident_id"]: _Incident.from_state(s) for s in state.get("incidents", [])
        }
        self.of_alert = dict(state.get("of_alert", {}))
        self.segments = {k: [list(s) for s in v] for k, v in state.get("segments", {}).items()}
        self._seq = int(state.get("seq", 0))
        self._changed.clear()

    # internals ---------------------------------------------------------------------------

    def _repeat_keys(self, alert: dict[str, Any]) -> list[str]:
        """The key that links a rule's repeated alerts about one entity across its cooldown."""
        rule, kind = alert["rule"], alert["entity_type"]
        grouped = kind == "global" or alert.get("group") or is_group_alert(alert)
        if rule not in self.rule_gap_us or grouped:
            return []
        return [f"repeat|{rule}|{kind}|{alert['entity']}"]

    def _gap(self, key: str) -> int:
        """How far apart two spans on `key` may be and still link."""
        if key.startswith("repeat|"):
            return self.rule_gap_us[key.split("|", 2)[1]]
        return self.link_gap_us

    def _near(self, keys: list[str], start: int, end: int) -> set[str]:
        near = set()
        for key in keys:
            gap = self._gap(key)
            near |= {
                segment[2]
                for segment in self.segments.get(key, ())
                if segment[0] - gap <= end and start <= segment[1] + gap
            }
        return near

    def _extend(self, key: str, start: int, end: int, incident_id: str) -> None:
        """Record the alert's span on a key, merged with this incident's nearby segments (an
        alert in the hole between two merged spans links to one of them anyway)."""
        gap = self._gap(key)
        segments = self.segments.setdefault(key, [])
        kept = []
        for segment in segments:
            near = segment[0] - gap <= end and start <= segment[1] + gap
            if near and self.root(segment[2]).incident_id == incident_id:
                start, end = min(start, segment[0]), max(end, segment[1])
            else:
                kept.append(segment)
        kept.append([start, end, incident_id])
        self.segments[key] = kept

    def _absorb(self, survivor: _Incident, absorbed: _Incident, now_us: int) -> None:
        lead = absorbed.alerts.get(absorbed.lead_id) if absorbed.lead_id else None
        survivor.alerts.update(absorbed.alerts)
        if lead is not None:
            survivor.keep(lead)  # the better of the two leads leads
        for alert_id in absorbed.alerts:
            self.of_alert[alert_id] = survivor.incident_id
        survivor.last_us = max(survivor.last_us, absorbed.last_us)
        survivor.opened_us = min(survivor.opened_us, absorbed.opened_us)
        absorbed.alerts, absorbed.lead_id = {}, None
        absorbed.merged_into = survivor.incident_id
        absorbed.state = IncidentState.MERGED
        absorbed.updated_us = now_us
        self._changed.add(absorbed.incident_id)
