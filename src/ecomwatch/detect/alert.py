"""An alert: what was raised, about whom, why, with which evidence — and its JSON line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ecomwatch.detect.cooldown import iso, iso_us
from ecomwatch.detect.rules import Severity

__all__ = ["Alert", "iso", "iso_us", "parse_iso", "parse_iso_us"]


@dataclass(frozen=True)
class Alert:
    alert_id: str
    rule: str
    severity: Severity
    entity_type: str
    entity: str
    first_seen: datetime
    last_seen: datetime
    detected_at: datetime
    count: int
    evidence: dict[str, float]
    explanation: str
    labels: tuple[str, ...]
    escalated_from: Severity | None = None
    ips: tuple[str, ...] = ()  # IPs behind the entity (up to ten)
    group: dict[str, str] | None = None  # for a member: the group it was flagged with
    window_start: datetime | None = None  # start of the window that raised it
    incident_id: str | None = None  # the incident it was correlated into

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "severity": self.severity.value,
            "entity_type": self.entity_type,
            "entity": self.entity,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "detected_at": iso(self.detected_at),
            "count": self.count,
            "evidence": self.evidence,
            "explanation": self.explanation,
            "labels": list(self.labels),
            "escalated_from": self.escalated_from.value if self.escalated_from else None,
            "ips": list(self.ips),
            "group": self.group,
            "window_start": iso(self.window_start) if self.window_start else None,
            "incident_id": self.incident_id,
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Alert:
        """An alert read back from its JSON line (`to_json`)."""
        window_start = row.get("window_start")
        escalated_from = row.get("escalated_from")
        return cls(
            alert_id=row["alert_id"],
            rule=row["rule"],
            severity=Severity(row["severity"]),
            entity_type=row["entity_type"],
            entity=row["entity"],
            first_seen=parse_iso(row["first_seen"]),
            last_seen=parse_iso(row["last_seen"]),
            detected_at=parse_iso(row["detected_at"]),
            count=row["count"],
            evidence=row["evidence"],
            explanation=row["explanation"],
            labels=tuple(row["labels"]),
            escalated_from=Severity(escalated_from) if escalated_from else None,
            ips=tuple(row["ips"]),
            group=row.get("group"),
            window_start=parse_iso(window_start) if window_start else None,
            incident_id=row.get("incident_id"),
        )


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_iso_us(text: str) -> int:
    """An alert line's time as epoch microseconds."""
    return int(parse_iso(text).timestamp() * 1_000_000)
