"""Raising alerts: one per (rule, entity) per cooldown, escalated in place, explained.

The detector finds the (key, window) rows whose condition holds; this turns each into an
alert, or holds it while the rule's cooldown for that entity lasts, or re-emits the same alert
id with a higher severity when the rule's `escalate_when` holds. Group rules flag each member
(an IP of a flagged subnet, user agent or the whole shop) with an alert of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ecomwatch.detect import cooldown
from ecomwatch.detect.alert import Alert
from ecomwatch.detect.rules import Rule, Severity


class Alerting:
    """`alerts` collects what was raised; `raised` is the state that outlives a checkpoint."""

    def __init__(self) -> None:
        # (rule, entity) → the last alert raised for it
        self.raised: dict[tuple[str, str], dict[str, Any]] = {}
        self.alerts: list[Alert] = []
        # alert id → the last event of the latest window its cooldown held: the entity is
        # still at it, which keeps the alert's incident open (`Correlator.active`)
        self.held: dict[str, datetime] = {}

    def take_held(self) -> dict[str, datetime]:
        """The windows held since the last call, by the alert that holds them."""
        held, self.held = self.held, {}
        return held

    def raise_row(self, rule: Rule, row: dict[str, Any], now_us: int) -> None:
        """An alert for a (key, window) row that met the rule's condition."""
        entity = str(row["name0"])
        severity = rule.spec.severity
        if row["worse"] and rule.spec.escalate_to is not None:
            severity = rule.spec.escalate_to
        evidence = {
            name: cooldown.evidence_number(row[name]) for name in ("events", *rule.features)
        }
        if "members" in row:
            evidence["members"] = row["members"]
        self._emit(
            rule,
            now_us,
            kind=rule.spec.key.value,
            entity=entity,
            severity=severity,
            window_us=row["window_us"],
            row=row,
            evidence=evidence,
            explanation=cooldown.explanation(explanation_template(rule), entity, evidence),
            ips=tuple(row["ips"]),
            group=None,
        )

    def raise_member(
        self, rule: Rule, group_row: dict[str, Any], member: dict[str, Any], now_us: int
    ) -> None:
        """An alert for one member that met the member condition of a flagged group."""
        assert rule.spec.members is not None
        kind = rule.spec.members.key.value
        entity = str(member["name1"])
        evidence = {
            name: cooldown.evidence_number(member[name])
            for name in ("events", *rule.member_features)
        }
        group = {"entity_type": rule.spec.key.value, "entity": str(group_row["name0"])}
        explanation = cooldown.explanation(
            member_explanation_template(rule),
            entity,
            evidence,
            members=group_row["members"],
            group=group["entity"],
        )
        self._emit(
            rule,
            now_us,
            kind=kind,
            entity=entity,
            severity=rule.spec.severity,
            window_us=member["window_us"],
            row=member,
            evidence=evidence,
            explanation=explanation,
            ips=(entity,) if kind == "ip" else (),
            group=group,
        )

    def _emit(
        self,
        rule: Rule,
        now_us: int,
        *,
        kind: str,
        entity: str,
        severity: Severity,
        window_us: int,
        row: dict[str, Any],
        evidence: dict[str, Any],
        explanation: str,
        ips: tuple[str, ...],
        group: dict[str, str] | None,
    ) -> None:
        """Raise, escalate or hold an alert for (rule, entity) under the rule's cooldown."""
        state_key = (rule.name, f"{kind}:{entity}" if group else entity)
        decided = cooldown.decide(
            self.raised.get(state_key),
            rule=rule.name,
            kind=kind,
            entity=entity,
            severity=severity.value,
            window_us=window_us,
            cooldown_s=rule.cooldown_s,
        )
        if decided is None:  # already alerted, nothing worse: the cooldown holds
            held_by = self.raised[state_key]["alert_id"]
            if held_by not in self.held or self.held[held_by] < row["last_seen"]:
                self.held[held_by] = row["last_seen"]
            return
        state, escalated = decided
        escalated_from = Severity(escalated) if escalated else None
        alert_id = state["alert_id"]
        self.alerts.append(
            Alert(
                alert_id=alert_id,
                rule=rule.name,
                severity=severity,
                entity_type=kind,
                entity=entity,
                first_seen=row["first_seen"],
                last_seen=row["last_seen"],
                detected_at=datetime.fromtimestamp(now_us / 1e6, UTC),
                count=int(row["events"]),
                evidence=evidence,
                explanation=explanation,
                labels=rule.spec.labels,
                escalated_from=escalated_from,
                ips=ips,
                group=group,
                window_start=datetime.fromtimestamp(window_us / 1e6, UTC),
            )
        )
        self.raised[state_key] = state


def explanation_template(rule: Rule) -> str:
    """How an alert of the rule explains itself, `{entity}` and `{evidence}` to fill
    (`cooldown.explanation`; the Flink job gets the template from its compiler)."""
    return (
        f"{rule.spec.key.value} {{entity}} matched {rule.name} in a {rule.spec.window} window "
        f"({{evidence}}; condition: {rule.spec.condition}). {rule.spec.description}"
    ).strip()


def member_explanation_template(rule: Rule) -> str:
    """How a group's member explains itself: `{entity}`, `{evidence}`, `{members}` (how many)
    and `{group}` (the group's entity) to fill."""
    assert rule.spec.members is not None
    return (
        f"{rule.spec.members.key.value} {{entity}} is one of {{members}} members of "
        f"{rule.spec.key.value} {{group}} flagged by {rule.name} ({{evidence}}; member "
        f"condition: {rule.spec.members.condition}). {rule.spec.description}"
    ).strip()
