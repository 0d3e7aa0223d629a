"""An operator's word on an incident: acknowledged (someone is on it) or resolved (it is over).

Actions are kept apart from the detector's incident records, in a log of their own
(`<alerts>.incident-actions.jsonl`, or the state store): the detector's log is its output, cut
back and written again on a resume; an action is input only a person gives, and no resume may
lose it. Reading an incident lays its latest action over the detector's latest record:

- *acknowledged* holds while the incident stays open, has not flared again after resolving and
  has not risen above the severity that was acknowledged; after that it shows as open again;
- *resolved* holds until an alert newer than the resolution joins it (an alert whose events
  end after the incident's `last_seen` when it was resolved); it is then open again.

The detector resolves incidents on its own once they are quiet; an operator's resolve only
says so sooner.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ecomwatch.detect.incident import IncidentState
from ecomwatch.detect.rules import Severity

ACKNOWLEDGE = "acknowledge"
RESOLVE = "resolve"
ACTIONS = (ACKNOWLEDGE, RESOLVE)


class ActionError(ValueError):
    """An action the incident's state does not allow (the message says why)."""


def actions_path_for(alerts: Path) -> Path:
    """`alerts.jsonl` → `alerts.incident-actions.jsonl`, beside the incidents log."""
    stem = alerts.name[: -len(".jsonl")] if alerts.name.endswith(".jsonl") else alerts.name
    return alerts.with_name(stem + ".incident-actions.jsonl")


def new_action(record: dict[str, Any], action: str, *, by: str, at: str) -> dict[str, Any]:
    """The line that records `action` on an incident as it is now (`record`, actions applied).
    Raises ActionError when the state does not allow it."""
    if action not in ACTIONS:
        raise ActionError(f"the action is {' or '.join(ACTIONS)}, not {action!r}")
    state = record["state"]
    if state == IncidentState.MERGED:
        raise ActionError(
            f"incident {record['incident_id']} was merged into {record['merged_into']}; "
            "act on that one"
        )
    if state == IncidentState.RESOLVED:
        raise ActionError(f"incident {record['incident_id']} is already resolved")
    if action == ACKNOWLEDGE and state == IncidentState.ACKNOWLEDGED:
        raise ActionError(f"incident {record['incident_id']} is already acknowledged")
    return {
        "incident_id": record["incident_id"],
        "action": action,
        "by": by,
        "at": at,
        # What the incident was when acted on: the action lapses when it changes past these.
        "severity": record["severity"],
        "reopened": record.get("reopened", 0),
        "last_seen": record["last_seen"],
    }


def apply_action(record: dict[str, Any], action: dict[str, Any] | None) -> dict[str, Any]:
    """The record as the operator's latest action leaves it (a copy; `record` is unchanged)."""
    if action is None or record["state"] == IncidentState.MERGED:
        return record
    if action["action"] == RESOLVE:
        if record["last_seen"] > action["last_seen"]:  # it flared again after
            return record
        if record["state"] == IncidentState.RESOLVED:  # the detector agrees: keep its time
            return {**record, "resolved_by": action["by"]}
        return {
            **record,
            "state": IncidentState.RESOLVED.value,
            "resolved_at": action["at"],
            "resolved_by": action["by"],
        }
    holds = (
        record["state"] == IncidentState.OPEN
        and record.get("reopened", 0) == action["reopened"]
        and Severity(record["severity"]).rank <= Severity(action["severity"]).rank
    )
    if not holds:
        return record
    return {
        **record,
        "state": IncidentState.ACKNOWLEDGED.value,
        "acknowledged_at": action["at"],
        "acknowledged_by": action["by"],
    }


def with_actions(
    latest: dict[str, dict[str, Any]], actions: Iterable[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Incident id → its record with the latest action on it applied."""
    last: dict[str, dict[str, Any]] = {}
    for action in actions:
        last[action["incident_id"]] = action
    return {i: apply_action(record, last.get(i)) for i, record in latest.items()}
