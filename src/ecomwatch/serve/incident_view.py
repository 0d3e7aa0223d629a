"""The live service's incidents: the detector's latest record of each, with the operators'
actions laid over them, filtered and paged for the API and the dashboard.

The records come from the detector process as they change (and, at start, from the log an
earlier run left beside the alerts file). Actions (acknowledge, resolve) arrive through the API
and are appended to the actions log beside the incidents log before they count, so a restart
keeps them. At most `MAX_KEPT` incidents are held; the least recently changed go first.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecomwatch.detect.alert import iso_us, parse_iso
from ecomwatch.detect.incident import IncidentState, incidents_path_for
from ecomwatch.detect.incident_actions import actions_path_for, apply_action, new_action
from ecomwatch.detect.incident_log import final_incident
from ecomwatch.detect.rules import Severity
from ecomwatch.sinks.jsonl import read_json_lines

MAX_KEPT = 5_000
CHART_BUCKETS = 288  # the incidents-over-time chart: the last 24 hours in 5-minute bars


@dataclass(frozen=True)
class IncidentQuery:
    """The API's filters: all optional; `text` matches an IP, an entity or the title."""

    state: str | None = None
    severity: str | None = None  # this severity or above
    kind: str | None = None
    text: str | None = None
    since: str | None = None  # last seen at or after (ISO 8601)
    limit: int = 20
    offset: int = 0


class IncidentView:
    def __init__(self, alerts: Path) -> None:
        self.actions_path = actions_path_for(alerts)
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()  # least recent first
        self._actions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        log = incidents_path_for(alerts)
        if log.exists():
            self.update(read_json_lines(log))
        if self.actions_path.exists():
            for action in read_json_lines(self.actions_path):
                self._actions[action["incident_id"]] = action

    def update(self, records: Iterable[dict[str, Any]]) -> None:
        """The detector's new records (the latest for an id replaces the one held)."""
        with self._lock:
            for record in records:
                self._records.pop(record["incident_id"], None)
                self._records[record["incident_id"]] = record
            while len(self._records) > MAX_KEPT:
                old, _ = self._records.popitem(last=False)
                self._actions.pop(old, None)

    def get(self, incident_id: str) -> dict[str, Any] | None:
        """The incident's current record, following merges (None: not held)."""
        with self._lock:
            final = final_incident(incident_id, self._records)
            record = self._records.get(final)
            return None if record is None else apply_action(record, self._actions.get(final))

    def resolve_id(self, incident_id: str) -> str:
        """The incident an id ended up in (after merges)."""
        with self._lock:
            return final_incident(incident_id, self._records)

    def act(self, incident_id: str, action: str, *, by: str, at: str) -> dict[str, Any]:
        """Acknowledge or resolve; the action is durable before it counts. KeyError for an
        unknown id, ActionError when the incident's state does not allow it."""
        record = self.get(incident_id)
        if record is None:
            raise KeyError(incident_id)
        line = new_action(record, action, by=by, at=at)
        with self._lock:
            with self.actions_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
            self._actions[line["incident_id"]] = line
        current = self.get(line["incident_id"])
        assert current is not None
        return current

    def query(self, query: IncidentQuery, matching_ids: set[str] | None = None) -> dict[str, Any]:
        """One page of incidents, newest first, with the totals the filters leave and the count
        per state. `matching_ids` narrows to these incidents (a search by entity)."""
        floor = Severity(query.severity).rank if query.severity else 0
        text = (query.text or "").strip().lower()
        with self._lock:
            current = [
                apply_action(r, self._actions.get(i))
                for i, r in self._records.items()
                if r["state"] != IncidentState.MERGED
            ]
        by_state: dict[str, int] = {}
        for record in current:
            by_state[record["state"]] = by_state.get(record["state"], 0) + 1
        chosen = [
            r
            for r in current
            if (query.state is None or r["state"] == query.state)
            and Severity(r["severity"]).rank >= floor
            and (query.kind is None or r["kind"] == query.kind)
            and (query.since is None or r["last_seen"] >= query.since)
            and (
                not text
                or text in r["title"].lower()
                or any(text == ip for ip in r["ips"])
                or (matching_ids is not None and r["incident_id"] in matching_ids)
            )
        ]
        chosen.sort(key=lambda r: (r["last_seen"], r["incident_id"]), reverse=True)
        page = chosen[query.offset : query.offset + query.limit]
        return {"total": len(chosen), "by_state": by_state, "incidents": page}

    def over_time(self, bucket_s: int = 300) -> list[dict[str, Any]]:
        """Incidents opened per `bucket_s` of event time, by severity, the latest
        `CHART_BUCKETS` buckets (the dashboard's chart: bounded, however long it runs)."""
        with self._lock:
            records = [r for r in self._records.values() if r["state"] != IncidentState.MERGED]
        buckets: dict[int, dict[str, int]] = {}
        for record in records:
            second = int(parse_iso(record["first_seen"]).timestamp()) // bucket_s * bucket_s
            counts = buckets.setdefault(second, {})
            counts[record["severity"]] = counts.get(record["severity"], 0) + 1
        latest = sorted(buckets)[-CHART_BUCKETS:]
        return [{"start": iso_us(s * 1_000_000), **buckets[s]} for s in latest]
