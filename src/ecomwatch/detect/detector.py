"""The detector operator: rules evaluated on every micro-batch, in event time, with early firing.

Events of open windows are kept in an in-memory DuckDB table (only the columns rules read). After
each batch, the features of every (key, window) the batch touched are recomputed over that
window's events and each rule's condition is evaluated on them, so an alert is raised in the
batch where its condition first holds, not when the window closes. Windows are tumbling and
aligned to the epoch; when the watermark passes a window's end its events are evicted (memory
follows the active keys, not the input), and its event count feeds the key's baseline.

One alert per (rule, entity) per cooldown: while it lasts, a worse condition (the rule's
`escalate_when`) re-emits the same alert id with the higher severity instead of a new alert.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.detect.features import FEATURES
from ecomwatch.detect.rules import KeyKind, Rule, Severity
from ecomwatch.detect.user_agents import UserAgentClassifier
from ecomwatch.sinks.jsonl import JsonLinesFile

KEY_SQL: dict[KeyKind, str] = {
    KeyKind.IP: "ip",
    KeyKind.SUBNET: r"regexp_replace(ip, '\.\d+$', '.0/24')",
    KeyKind.USER: "CAST(user_id AS VARCHAR)",
    KeyKind.SESSION: "user_session",
    KeyKind.USER_AGENT: "user_agent",
    KeyKind.GLOBAL: "'*'",
}
STATE_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "price",
    "user_session",
    "user_id",
    "ip",
    "user_agent",
)


def window_start_sql(window_us: int) -> str:
    """The start (epoch microseconds) of the tumbling window an event falls in."""
    return f"(fdiv(epoch_us(event_time), {window_us})::BIGINT * {window_us})"


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

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime) -> str:
            return t.astimezone(UTC).isoformat().replace("+00:00", "Z")

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
        }


def _number(value: Any) -> float | int:
    if isinstance(value, float):
        return round(value, 4)
    return int(value) if value is not None else 0


class Detector:
    """The operator. `alerts` collects what was raised; sinks read it after each batch."""

    name = "detector"

    def __init__(self, rules: list[Rule], *, sink: JsonLinesFile | None = None) -> None:
        self.rules = rules
        self.sink = sink  # alerts are appended as they are raised
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(
            "CREATE TABLE events (event_time TIMESTAMPTZ, event_type VARCHAR, product_id BIGINT, "
            "category_id BIGINT, price DOUBLE, user_session VARCHAR, user_id BIGINT, ip VARCHAR, "
            "user_agent VARCHAR, declared_bot BOOLEAN, search_engine BOOLEAN)"
        )
        self.agents = UserAgentClassifier()
        # (rule, entity) → the last alert raised for it
        self.raised: dict[tuple[str, str], dict[str, Any]] = {}
        # (rule, entity) → [sum of events, closed windows] for the baseline feature
        self.baselines: dict[tuple[str, str], list[float]] = {}
        self.alerts: list[Alert] = []
        self._now_us: int | None = None
        # rule → end of the last window whose events already fed the baseline
        self._closed_until: dict[str, int] = {}

    # operator protocol -------------------------------------------------------------------

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        if events.num_rows:
            batch = self._project(events)
            self.con.register("batch", batch)
            self.con.execute("INSERT INTO events SELECT * FROM batch")
            latest = int(pc.max(events["event_time"]).cast(pa.int64()).as_py())
            self._now_us = latest if self._now_us is None else max(self._now_us, latest)
            raised = len(self.alerts)
            for rule in self.rules:
                self._evaluate(rule)
            self.con.unregister("batch")
            if self.sink is not None:
                self.sink.write_records([a.to_json() for a in self.alerts[raised:]])
        if watermark_us is not None:
            self._evict(watermark_us)

    def snapshot(self) -> dict[str, Any]:
        table = self.con.sql("SELECT * FROM events").to_arrow_table()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(
            sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")
        ) as writer:
            writer.write_table(table)
        return {
            "events_ipc": base64.b64encode(sink.getvalue().to_pybytes()).decode(),
            "raised": [[rule, entity, state] for (rule, entity), state in self.raised.items()],
            "baselines": [
                [rule, entity, value] for (rule, entity), value in self.baselines.items()
            ],
            "now_us": self._now_us,
            "closed_until": self._closed_until,
            # The alert file's length at this checkpoint: a resumed run cuts it back to it.
            "alerts_file": str(self.sink.path) if self.sink else None,
            "alerts_bytes": self.sink.flush() if self.sink else 0,
        }

    def restore(self, state: dict[str, Any]) -> None:
        if not state:
            return
        table = pa.ipc.open_stream(base64.b64decode(state["events_ipc"])).read_all()
        self.con.execute("DELETE FROM events")
        if table.num_rows:
            self.con.register("restored", table)
            self.con.execute("INSERT INTO events SELECT * FROM restored")
            self.con.unregister("restored")
        self.raised = {(r, e): s for r, e, s in state.get("raised", [])}
        self.baselines = {(r, e): v for r, e, v in state.get("baselines", [])}
        self._now_us = state.get("now_us")
        self._closed_until = dict(state.get("closed_until", {}))
        if self.sink is not None and state.get("alerts_file") == str(self.sink.path):
            self.sink.resume_at(int(state.get("alerts_bytes", 0)))

    # internals ---------------------------------------------------------------------------

    def _project(self, events: pa.Table) -> pa.Table:
        agents = events["user_agent"].cast(pa.string())
        flags = self.agents.classify(agents)
        columns = {name: events[name] for name in STATE_COLUMNS}
        for name in ("event_type", "ip", "user_agent"):
            columns[name] = columns[name].cast(pa.string())
        columns["declared_bot"] = flags.declared_bot
        columns["search_engine"] = flags.search_engine
        return pa.table(columns)

    def _feature_sql(self, rule: Rule) -> str:
        """Features of every (key, window) the batch touched; only those the rule reads."""
        key = KEY_SQL[rule.spec.key]
        window_us = rule.window_s * 1_000_000
        start = window_start_sql(window_us)
        wanted = dict.fromkeys(("events", *rule.features))
        aggregates = ",\n".join(f"{FEATURES[name][0]} AS {name}" for name in wanted)
        gap = (
            f", epoch(e.event_time) - lag(epoch(e.event_time)) OVER ("
            f"PARTITION BY {key}, {start} ORDER BY e.event_time) AS gap_s"
            if "gap_cv" in wanted
            else ""
        )
        baseline = "LEFT JOIN baselines b ON b.key = " + key if "baseline" in wanted else ""
        baseline_column = ", coalesce(b.average, 0) AS baseline" if "baseline" in wanted else ""
        return f"""
            WITH touched AS (
                SELECT DISTINCT {key} AS key, {start} AS window_us FROM batch
                WHERE {key} IS NOT NULL AND {rule.filter_sql}),
            rows AS (
                SELECT e.*, {key} AS key, {start} AS window_us {gap} {baseline_column}
                FROM events e {baseline}
                WHERE ({key}, {start}) IN (SELECT key, window_us FROM touched)
                  AND {rule.filter_sql})
            SELECT key, window_us, min(event_time) AS first_seen, max(event_time) AS last_seen,
                   {aggregates}
            FROM rows GROUP BY key, window_us"""

    def _evaluate(self, rule: Rule) -> None:
        averages = [
            (e, v[0] / v[1]) for (r, e), v in self.baselines.items() if r == rule.name and v[1]
        ]
        self.con.register(
            "baselines",
            pa.table(
                {
                    "key": pa.array([a[0] for a in averages], pa.string()),
                    "average": pa.array([a[1] for a in averages], pa.float64()),
                }
            ),
        )
        escalate = rule.escalate_sql or "FALSE"
        sql = f"""
            SELECT *, ({escalate}) AS worse FROM ({self._feature_sql(rule)})
            WHERE {rule.condition_sql} ORDER BY key, window_us"""
        result = self.con.sql(sql).to_arrow_table().to_pylist()
        self.con.unregister("baselines")
        for row in result:
            self._raise(rule, row)

    def _raise(self, rule: Rule, row: dict[str, Any]) -> None:
        entity = str(row["key"])
        assert self._now_us is not None
        now = datetime.fromtimestamp(self._now_us / 1e6, UTC)
        previous = self.raised.get((rule.name, entity))
        severity = rule.spec.severity
        if row["worse"] and rule.spec.escalate_to is not None:
            severity = rule.spec.escalate_to
        escalated_from: Severity | None = None
        if (
            previous is not None
            and self._now_us - previous["raised_us"] < rule.cooldown_s * 1_000_000
        ):
            if Severity(previous["severity"]).rank >= severity.rank:
                return  # already alerted, nothing worse: the cooldown holds
            escalated_from = Severity(previous["severity"])
            alert_id = previous["alert_id"]
        else:
            seed = f"{rule.name}|{rule.spec.key.value}|{entity}|{row['window_us']}"
            alert_id = hashlib.sha1(seed.encode()).hexdigest()[:16]
        evidence = {name: _number(row[name]) for name in ("events", *rule.features)}
        shown = ", ".join(f"{k}={v}" for k, v in evidence.items())
        explanation = (
            f"{rule.spec.key.value} {entity} matched {rule.name} in a {rule.spec.window} window "
            f"({shown}; condition: {rule.spec.condition}). {rule.spec.description}"
        ).strip()
        alert = Alert(
            alert_id=alert_id,
            rule=rule.name,
            severity=severity,
            entity_type=rule.spec.key.value,
            entity=entity,
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            detected_at=now,
            count=int(row["events"]),
            evidence=evidence,
            explanation=explanation,
            labels=rule.spec.labels,
            escalated_from=escalated_from,
        )
        self.alerts.append(alert)
        raised_us = self._now_us if escalated_from is None else previous["raised_us"]  # type: ignore[index]
        self.raised[(rule.name, entity)] = {
            "alert_id": alert_id,
            "severity": severity.value,
            "raised_us": raised_us,
        }

    def _evict(self, watermark_us: int) -> None:
        """Close windows the watermark has passed: update baselines, drop their events."""
        for rule in self.rules:
            if "baseline" not in rule.features:
                continue
            key = KEY_SQL[rule.spec.key]
            window_us = rule.window_s * 1_000_000
            start = window_start_sql(window_us)
            done = self._closed_until.get(rule.name, -(2**62))
            closing = self.con.execute(
                f"SELECT {key} AS key, count(*) AS n FROM events "
                f"WHERE {start} + {window_us} <= ? AND {start} + {window_us} > ? "
                f"AND {key} IS NOT NULL GROUP BY 1",
                [watermark_us, done],
            ).fetchall()
            for entity, count in closing:
                total = self.baselines.setdefault((rule.name, str(entity)), [0.0, 0.0])
                total[0] += count
                total[1] += 1
            self._closed_until[rule.name] = max(done, watermark_us - watermark_us % window_us)
        # An event is kept while some rule whose filter it passes may still need it: rules with
        # long windows and narrow filters (search engines, 1 h) then keep only their own rows.
        keep = " OR ".join(
            f"(epoch_us(event_time) >= {watermark_us - rule.window_s * 1_000_000} "
            f"AND {rule.filter_sql})"
            for rule in self.rules
        )
        self.con.execute(f"DELETE FROM events WHERE NOT ({keep or 'FALSE'})")
