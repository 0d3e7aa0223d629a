"""Reading the incidents a run wrote: its log of records beside the alerts file, with the
operators' actions on them (`incident_actions`) applied."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ecomwatch.detect.incident import incidents_path_for
from ecomwatch.detect.incident_actions import actions_path_for, new_action, with_actions
from ecomwatch.sinks.jsonl import read_json_lines


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
