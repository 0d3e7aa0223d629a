"""The embedded alert state store (SQLite): alerts, current state per entity, a blocklist,
and incidents with the operators' actions on them.

Writes are idempotent upserts by `alert_id`: the stored version of an alert is the highest one
seen (by severity, then count), so an alert replayed after a crash (same input, same id)
changes nothing, an escalation replaces it, and an older version arriving late is ignored.
Entities alerted at `medium` or above are blocked for `block_hours` from the alert's detection
time; a block only ever moves later (at the same expiry, to a higher severity).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ecomwatch.detect.rules import FLAGGING

SEVERITIES = ("info", "low", "medium", "high", "critical")
BLOCK_FROM = FLAGGING.value
BLOCKABLE = ("ip", "subnet")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, rule TEXT NOT NULL, severity TEXT NOT NULL,
    entity_type TEXT NOT NULL, entity TEXT NOT NULL, first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL, detected_at TEXT NOT NULL, count INTEGER NOT NULL,
    evidence TEXT NOT NULL, explanation TEXT NOT NULL, labels TEXT NOT NULL,
    incident_id TEXT);
CREATE TABLE IF NOT EXISTS blocklist (
    entity_type TEXT NOT NULL, entity TEXT NOT NULL, rule TEXT NOT NULL,
    severity TEXT NOT NULL, alert_id TEXT NOT NULL, expires_at TEXT NOT NULL,
    PRIMARY KEY (entity_type, entity));
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incident_actions (
    incident_id TEXT PRIMARY KEY, action TEXT NOT NULL);
CREATE VIEW IF NOT EXISTS entities AS
    SELECT entity_type, entity, count(*) AS alerts, max(last_seen) AS last_seen,
           max(CASE severity WHEN 'info' THEN 0 WHEN 'low' THEN 1 WHEN 'medium' THEN 2
                             WHEN 'high' THEN 3 ELSE 4 END) AS severity_rank
    FROM alerts GROUP BY entity_type, entity;
"""


def rank_of(severity: str) -> int:
    return SEVERITIES.index(severity)


def block_expiry(alert: dict[str, Any], block: timedelta) -> datetime | None:
    """When the block an alert sets ends: `block` after its detection, for an IP or subnet
    alerted at medium or above; None for any other alert (it blocks nothing)."""
    if alert["entity_type"] not in BLOCKABLE or rank_of(alert["severity"]) < rank_of(BLOCK_FROM):
        return None
    return datetime.fromisoformat(alert["detected_at"].replace("Z", "+00:00")) + block


class AlertStore:
    def __init__(self, path: Path | str, *, block_hours: float = 24.0) -> None:
        self.path = Path(path)
        self.block = timedelta(hours=block_hours)
        # Written by one thread at a time, which need not be the one that opened it (StoreWriter).
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.create_function("severity_rank", 1, rank_of, deterministic=True)
        self.db.executescript(_SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(alerts)")}
        if "incident_id" not in columns:  # a store written before incidents
            self.db.execute("ALTER TABLE alerts ADD COLUMN incident_id TEXT")
        # A local file is written or raises: nothing kept aside to send again.
        self.resent = self.failed = 0
        self.failures: Path | None = None
        self.unreachable: str | None = None

    def add(self, alerts: list[dict[str, Any]]) -> None:
        with self.db:
            for a in alerts:
                self.db.execute(
                    """INSERT INTO alerts (alert_id, rule, severity, entity_type, entity,
                         first_seen, last_seen, detected_at, count, evidence, explanation,
                         labels, incident_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                       ON CONFLICT(alert_id) DO UPDATE SET
                         severity = excluded.severity, last_seen = excluded.last_seen,
                         detected_at = excluded.detected_at, count = excluded.count,
                         evidence = excluded.evidence, explanation = excluded.explanation,
                         labels = excluded.labels,
                         incident_id = coalesce(excluded.incident_id, alerts.incident_id)
                       WHERE severity_rank(excluded.severity) > severity_rank(alerts.severity)
                          OR (severity_rank(excluded.severity) = severity_rank(alerts.severity)
                              AND excluded.count > alerts.count)""",
                    (
                        a["alert_id"],
                        a["rule"],
                        a["severity"],
                        a["entity_type"],
                        a["entity"],
                        a["first_seen"],
                        a["last_seen"],
                        a["detected_at"],
                        a["count"],
                        json.dumps(a["evidence"]),
                        a["explanation"],
                        json.dumps(a.get("labels", [])),
                        a.get("incident_id"),
                    ),
                )
                ends = block_expiry(a, self.block)
                if ends is not None:
                    expires = ends.isoformat().replace("+00:00", "Z")
                    self.db.execute(
                        """INSERT INTO blocklist VALUES (?,?,?,?,?,?)
                           ON CONFLICT(entity_type, entity) DO UPDATE SET
                             expires_at = excluded.expires_at, rule = excluded.rule,
                             severity = excluded.severity, alert_id = excluded.alert_id
                           WHERE excluded.expires_at > blocklist.expires_at
                              OR (excluded.expires_at = blocklist.expires_at
                                  AND severity_rank(excluded.severity)
                                      > severity_rank(blocklist.severity))""",
                        (
                            a["entity_type"],
                            a["entity"],
                            a["rule"],
                            a["severity"],
                            a["alert_id"],
                            expires,
                        ),
                    )

    def add_incidents(self, records: list[dict[str, Any]]) -> None:
        """The detector's incident records: the latest (the highest revision) stands, so a
        replay of older ones changes nothing."""
        with self.db:
            self.db.executemany(
                """INSERT INTO incidents VALUES (?,?,?)
                   ON CONFLICT(incident_id) DO UPDATE SET revision = excluded.revision,
                     record = excluded.record
                   WHERE excluded.revision >= incidents.revision""",
                [(r["incident_id"], r["revision"], json.dumps(r)) for r in records],
            )

    def incident_records(self) -> dict[str, dict[str, Any]]:
        """Incident id → the detector's latest record (no action applied)."""
        rows = self.db.execute("SELECT incident_id, record FROM incidents").fetchall()
        return {ident: json.loads(record) for ident, record in rows}

    def add_incident_action(self, action: dict[str, Any]) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO incident_actions VALUES (?, ?)",
                (action["incident_id"], json.dumps(action)),
            )

    def incident_actions(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT action FROM incident_actions").fetchall()
        return [json.loads(action) for (action,) in rows]

    def alerts_about(self, entity: str) -> list[dict[str, Any]]:
        """The alerts whose entity is `entity`, as the dicts they were added as."""
        return self._alerts("WHERE entity = ?", (entity,))

    def all_alerts(self) -> list[dict[str, Any]]:
        return self._alerts("", ())

    def _alerts(self, where: str, args: tuple[str, ...]) -> list[dict[str, Any]]:
        cursor = self.db.execute(f"SELECT * FROM alerts {where} ORDER BY detected_at", args)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            row["evidence"] = json.loads(row["evidence"])
            row["labels"] = json.loads(row["labels"])
        return rows

    def blocklist(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Blocks still in force at `now` (default: the latest event time the store has seen)."""
        if now is None:
            row = self.db.execute("SELECT max(detected_at) FROM alerts").fetchone()
            stamp = row[0] if row and row[0] else datetime.now(UTC).isoformat()
        else:
            stamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
        rows = self.db.execute(
            "SELECT entity_type, entity, rule, severity, alert_id, expires_at FROM blocklist "
            "WHERE expires_at > ? ORDER BY entity_type, entity",
            (stamp,),
        ).fetchall()
        names = ("entity_type", "entity", "rule", "severity", "alert_id", "expires_at")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def close(self) -> None:
        self.db.close()


def nginx_blocklist(blocks: list[dict[str, Any]]) -> str:
    """`deny` lines for nginx's http/server context (IPs, /24 subnets, IPv6 prefixes)."""
    lines = ["# ecomwatch blocklist: include in an nginx http or server block"]
    for b in blocks:
        lines.append(
            f"deny {b['entity']};  # {b['rule']} ({b['severity']}) until {b['expires_at']}"
        )
    return "\n".join(lines) + "\n"
