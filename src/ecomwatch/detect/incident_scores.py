"""How well alerts were grouped into incidents, against a scenario's campaign labels.

A campaign is one attacker (a scraper's IP) or one coordinated group (a botnet's or a flood's
IPs). Good grouping puts each campaign's alerts in one incident and no two campaigns in one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ecomwatch.detect.incident import flagged_ips
from ecomwatch.detect.incident_log import final_incident, latest_records
from ecomwatch.detect.rules import FLAGGING, Severity


@dataclass(frozen=True)
class IncidentScore:
    alerts: int
    incidents: int  # after merges
    campaigns_alerted: int  # attack campaigns with at least one alert
    campaigns_in_one: int  # … whose alerts are all in one incident
    most_incidents_per_campaign: int
    mixed_incidents: int  # incidents holding alerts of two or more attack campaigns
    legitimate_flagging_incidents: int  # incidents at medium or above with no attacker
    messages: int | None = None  # webhook messages (when notifications were scored)
    most_messages_per_campaign: int | None = None  # … about one attack campaign's incidents

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"incidents: {self.alerts:,} alerts in {self.incidents:,} incidents; "
            f"{self.campaigns_in_one}/{self.campaigns_alerted} attack campaigns in one incident "
            f"(at most {self.most_incidents_per_campaign}), {self.mixed_incidents} mixed, "
            f"{self.legitimate_flagging_incidents} legitimate at {FLAGGING.value} or above"
            + (
                f"; {self.messages:,} webhook messages, at most "
                f"{self.most_messages_per_campaign} about one campaign"
                if self.messages is not None
                else ""
            )
        )


def score_incidents(
    alerts: list[dict[str, Any]],
    records: Iterable[dict[str, Any]],
    labels: dict[str, Any],
    messages: list[dict[str, Any]] | None = None,
) -> IncidentScore:
    """`messages`: the JSON webhook messages the run sent (IncidentNotifier), to count how many
    were about each campaign (a digest is about none)."""
    latest = latest_records(records)
    campaigns: dict[str, str] = labels.get("campaigns", {})
    attack_kinds = set(labels["kinds"]["attack"])
    kinds: dict[str, str] = labels["ips"]
    of_campaign: dict[str, set[str]] = defaultdict(set)
    in_incident: dict[str, set[str]] = defaultdict(set)  # incident → attack campaigns
    worst: dict[str, int] = defaultdict(int)
    for alert in alerts:
        incident = final_incident(alert["incident_id"], latest)
        worst[incident] = max(worst[incident], Severity(alert["severity"]).rank)
        # A group's or the shop's own alert names a sample of IPs: members are scored.
        for ip in flagged_ips(alert):
            if kinds.get(ip) in attack_kinds:
                campaign = campaigns.get(ip, ip)
                of_campaign[campaign].add(incident)
                in_incident[incident].add(campaign)
    spread = [len(incidents) for incidents in of_campaign.values()]
    told: dict[str, int] = defaultdict(int)  # attack campaign → messages about it
    for message in messages or []:
        # One message about one incident, or several opening or resolving together: one
        # message for each campaign it is about, however many of its incidents it names.
        named = [message["incident"]] if "incident" in message else []
        if message.get("type") in ("incidents.opened", "incidents.resolved"):
            named = message["incidents"]
        finals = {final_incident(i["incident_id"], latest) for i in named}
        for campaign in set().union(*(in_incident.get(i, set()) for i in finals)):
            told[campaign] += 1
    per_campaign = [told[campaign] for campaign in of_campaign]
    return IncidentScore(
        alerts=len(alerts),
        incidents=len(worst),
        campaigns_alerted=len(spread),
        campaigns_in_one=sum(1 for n in spread if n == 1),
        most_incidents_per_campaign=max(spread, default=0),
        mixed_incidents=sum(1 for c in in_incident.values() if len(c) > 1),
        legitimate_flagging_incidents=sum(
            1 for i, rank in worst.items() if rank >= FLAGGING.rank and i not in in_incident
        ),
        messages=len(messages) if messages is not None else None,
        most_messages_per_campaign=max(per_campaign, default=0) if messages is not None else None,
    )
