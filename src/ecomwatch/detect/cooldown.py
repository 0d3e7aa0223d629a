"""Whether a matched window raises an alert: one per (rule, entity) per cooldown, escalated in
place, the alert's id, and how its line writes times and evidence.

Standard library only: the Flink job (`ecomwatch.flink`) ships this file and runs this very
code in its own environment, so both engines decide alike and give an alert the same id.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

# Severities from least to most severe (`rules.Severity` in this order).
SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")


def alert_id(rule: str, kind: str, entity: str, window_us: int) -> str:
    """The id of the alert a window raises: the same on every engine and every rerun."""
    seed = f"{rule}|{kind}|{entity}|{window_us}"
    return hashlib.sha1(seed.encode()).hexdigest()[:16]


def decide(
    previous: dict[str, Any] | None,
    *,
    rule: str,
    kind: str,
    entity: str,
    severity: str,
    window_us: int,
    cooldown_s: int,
) -> tuple[dict[str, Any], str | None] | None:
    """What a window whose condition holds does, given the (rule, entity)'s last alert state.

    None: the cooldown holds (alerted already, nothing worse). Otherwise the new state (alert
    id, severity, when the cooldown started) and the severity it escalates from (None for a
    new alert). The cooldown runs in event time from the start of the window that raised the
    alert, so which windows alert does not depend on how the input was batched.
    """
    escalated_from: str | None = None
    if previous is not None and window_us - previous["raised_us"] < cooldown_s * 1_000_000:
        if SEVERITY_ORDER.index(previous["severity"]) >= SEVERITY_ORDER.index(severity):
            return None
        escalated_from = previous["severity"]
        state = {"alert_id": previous["alert_id"], "raised_us": previous["raised_us"]}
    else:
        state = {"alert_id": alert_id(rule, kind, entity, window_us), "raised_us": window_us}
    state["severity"] = severity
    return state, escalated_from


_FIELD = re.compile(r"\{(entity|evidence|members|group)\}")


def explanation(template: str, entity: str, evidence: dict[str, Any], **more: Any) -> str:
    """An alert's explanation from its rule's template: `{entity}`, `{evidence}` and, for a
    group's member, `{members}` and `{group}` filled in one pass (an entity's text, a user
    agent, is the sender's and may hold braces: it is never read as a field)."""
    values = {
        "entity": entity,
        "evidence": ", ".join(f"{k}={v}" for k, v in evidence.items()),
        **{name: str(value) for name, value in more.items()},
    }
    return _FIELD.sub(lambda field: values.get(field[1], field[0]), template)


def iso(moment: datetime) -> str:
    """UTC, ISO 8601 with a Z: how alert and incident lines write times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_us(t_us: int) -> str:
    """Epoch microseconds as `iso` writes them."""
    return iso(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t_us))


def evidence_number(value: Any) -> float | int:
    """An evidence value as an alert line writes it: floats to 4 places, counts as ints."""
    if isinstance(value, float):
        return round(value, 4)
    return int(value) if value is not None else 0
