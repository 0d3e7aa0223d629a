"""Reading the incidents a run wrote — its log of records beside the alerts file, or the
state store — with the operators' actions on them (`incident_actions`) applied, and recording
new actions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ecomwatch.detect.incident import incidents_path_for
from ecomwatch.detect.incident_actions import actions_path_for, new_action, with_actions
from ecomwatch.sinks.jsonl import read_json_lines

if TYPE_CHECKING:
    from ecomwatch.sinks.stores import AlertStateStore


class IncidentBook(Protocol):
    """Where incidents are read and acted on: `where` names it in messages."""

    where: str

    def current(self) -> dict[str, dict[str, Any]] | None:
        """Incident id → its current record (None: no incidents were ever written here)."""
        ...

    def act(self, incident_id: str, action: str, *, by: str, at: str) -> dict[str, Any]: ...

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert line, for an incident's members."""
        ...


class IncidentFile:
    """The incidents log beside an alerts file, and the actions log beside it."""

    def __init__(self, alerts: Path) -> None:
        self.alerts_path = alerts
        self.where = str(incidents_path_for(alerts))

    def current(self) -> dict[str, dict[str, Any]] | None:
        return read_incident_log(self.alerts_path)

    def act(self, incident_id: str, action: str, *, by: str, at: str) -> dict[str, Any]:
        return record_action(self.alerts_path, incident_id, action, by=by, at=at)

    def alerts(self) -> list[dict[str, Any]]:
        path = self.alerts_path
        return read_json_lines(path) if path.exists() else []


class IncidentStore:
    """The incidents of a state store (SQLite or DynamoDB), actions kept beside them."""

    def __init__(self, store: AlertStateStore, where: str) -> None:
        self.store = store
        self.where = where

    def current(self) -> dict[str, dict[str, Any]] | None:
        records = self.store.incident_records()
        return with_actions(records, self.store.incident_actions()) if records else None

    def act(self, incident_id: str, action: str, *, by: str, at: str) -> dict[str, Any]:
        latest = self.current() or {}
        record = latest[final_incident(incident_id, latest)]
        self.store.add_incident_action(new_action(record, action, by=by, at=at))
        return (self.current() or {})[record["incident_id"]]

    def alerts(self) -> list[dict[str, Any]]:
        return self.store.all_alerts()


def read_incident_log(alerts: Path) -> dict[str, dict[str, Any]] | None:
    """Incident id → its current record, from the logs beside an alerts file (None: no log)."""
    path = incidents_path_for(alerts)
    if not path.exists():
        return None
    actions = actions_path_for(alerts)
    done = read_json_lines(actions) if actions.exists() else []
    return with_actions(latest_records(read_json_lines(path)), done)


def record_action(
    alerts: Path, incident_id: str, action: str, *, by: str, at: str
) -> dict[str, Any]:
    """Acknowledge or resolve an incident of the log beside `alerts` (a merged id acts on the
    incident it joined); returns the incident's record as it is now. Raises KeyError for an
    unknown id, ActionError for an action its state does not allow."""
    latest = read_incident_log(alerts) or {}
    record = latest[final_incident(incident_id, latest)]
    line = new_action(record, action, by=by, at=at)
    with actions_path_for(alerts).open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
    return (read_incident_log(alerts) or {})[record["incident_id"]]


def latest_records(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Incident id → its latest record, from an append-only incidents log."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        latest[record["incident_id"]] = record
    return latest


def final_incident(incident_id: str, latest: dict[str, dict[str, Any]]) -> str:
    """The incident an alert's incident id ended up in (following merges)."""
    seen = set()
    while (record := latest.get(incident_id)) is not None and record.get("merged_into"):
        if incident_id in seen:
            break
        seen.add(incident_id)
        incident_id = record["merged_into"]
    return incident_id
