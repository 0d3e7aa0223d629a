"""An ecomwatch detection job for Apache Flink (PyFlink 2.3), written by `ecomwatch flink compile`.

This file runs in Flink's own Python environment, not ecomwatch's: it imports only PyFlink,
the standard library, crawlerdetect (for the declared-bot UDF) and `cooldown.py`, which the
compiler copies beside it from ecomwatch (the same code the embedded detector runs). What it
runs comes from `job.json` beside it: the source and sink tables, the view the rules read and
one query per rule (each a CUMULATE window: the rule's window, judged every 1/60 of it).

    python job.py                      # a local mini-cluster (ecomwatch flink run does this)
    flink run --python job.py ...      # a cluster (README.md beside this file)
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor
from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.udf import ScalarFunction, udf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cooldown  # noqa: E402  (shipped beside this file)
from crawler_claims import ClaimJudge  # noqa: E402  (shipped beside this file)
from ip_prefix import ipv6_prefix  # noqa: E402  (shipped beside this file)

EPOCH = datetime(1970, 1, 1)


def epoch_us(moment: datetime) -> int:
    """A naive UTC timestamp (Flink's TIMESTAMP) as epoch microseconds."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


RECORD = Types.PICKLED_BYTE_ARRAY()  # records between the job's Python operators


def iso_us(t_us: int) -> str:
    return iso(EPOCH + timedelta(microseconds=t_us))


def iso(moment: datetime) -> str:
    """A Flink TIMESTAMP (naive, UTC) as the alert lines write times (`cooldown.iso`)."""
    return cooldown.iso(moment.replace(tzinfo=UTC))


class AgentClass(ScalarFunction):  # type: ignore[misc]
    """0 a browser, 1 a declared bot (crawlerdetect's list), 2 a well-known search engine."""

    def __init__(self, search_engines: str) -> None:
        self.search_engines = search_engines

    def open(self, function_context: Any) -> None:
        from crawlerdetect import CrawlerDetect

        self.detector = CrawlerDetect()
        self.engines = re.compile(self.search_engines, re.IGNORECASE)
        self.known: dict[str, int] = {}

    def eval(self, agent: str | None) -> int:
        if not agent:
            return 0
        found = self.known.get(agent)
        if found is None:
            bot = bool(self.detector.isCrawler(agent))
            found = (2 if self.engines.search(agent) else 1) if bot else 0
            if len(self.known) >= 100_000:
                self.known.clear()
            self.known[agent] = found
        return found


class CrawlerClass(ScalarFunction):  # type: ignore[misc]
    """A request's crawler claim: 0 none, 1 claimed, 2 verified, 3 spoofed (`crawler_claims`)."""

    def __init__(self, crawlers: dict[str, Any]) -> None:
        self.crawlers = crawlers

    def open(self, function_context: Any) -> None:
        self.judge = ClaimJudge(**self.crawlers)

    def eval(self, agent: str | None, ip: str | None) -> int:
        return int(self.judge.classify(agent, ip))


class Ipv6Prefix(ScalarFunction):  # type: ignore[misc]
    """An IPv6 address's subnet as text (`ip_prefix`), with the configured prefix length."""

    def __init__(self, bits: int) -> None:
        self.bits = bits

    def eval(self, ip: str | None) -> str | None:
        return ipv6_prefix(ip, self.bits) if ip else None


def step_record(row: Any) -> dict[str, Any]:
    """A matched step of a rule (a table row) as the record `Alerting` takes."""
    return {
        "state": row["rule"] + "\x00" + row["entity"],
        "rule": row["rule"],
        "entity": row["entity"],
        "window_us": epoch_us(row["window_start"]),
        "first_seen": iso(row["first_seen"]),
        "last_seen": iso(row["last_seen"]),
        # As on the embedded engine: the event time judged up to (the step's end).
        "detected_at": iso(row["window_time"]),
        "events": int(row["events"]),
        "evidence": json.loads(row["evidence"]),
        "worse": bool(row["worse"]),
        "group": None,
        "members": None,
        "ips": None,
    }


class Grouping(KeyedProcessFunction):  # type: ignore[misc]
    """A group rule's matched steps with their members, keyed by (rule, group): when the
    watermark passes a step, the group is flagged if at least `min` members met the member
    condition, and each member with it (records for `Alerting`)."""

    def __init__(self, rules: dict[str, dict[str, Any]]) -> None:
        self.rules = rules

    def open(self, runtime_context: RuntimeContext) -> None:
        self.pending = runtime_context.get_map_state(
            MapStateDescriptor("pending", Types.LONG(), Types.PICKLED_BYTE_ARRAY())
        )

    def process_element(self, row: Any, ctx: Any) -> Any:
        step_ms = epoch_us(row["window_time"]) // 1000
        rows = self.pending.get(step_ms) or []
        rows.append(
            {
                "group": step_record(row),
                "member": row["member_entity"],
                "window_us": epoch_us(row["member_window_start"]),
                "first_seen": iso(row["member_first_seen"]),
                "last_seen": iso(row["member_last_seen"]),
                "events": int(row["member_events"]),
                "evidence": json.loads(row["member_evidence"]),
            }
        )
        self.pending.put(step_ms, rows)
        ctx.timer_service().register_event_time_timer(step_ms)
        yield from ()

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        rows = self.pending.get(timestamp)
        if not rows:
            return
        self.pending.remove(timestamp)
        group = rows[0]["group"]
        rule = self.rules[group["rule"]]
        members = rule["members"]
        if len(rows) < members["min"]:
            return
        names = sorted(row["member"] for row in rows)
        yield {
            **group,
            "members": len(rows),
            "ips": names[:10] if members["kind"] == "ip" else [],
        }
        for row in rows:
            yield {
                **group,
                "state": group["rule"] + "\x00" + members["kind"] + ":" + row["member"],
                "entity": row["member"],
                "window_us": row["window_us"],
                "first_seen": row["first_seen"],
                "last_seen": row["last_seen"],
                "events": row["events"],
                "evidence": row["evidence"],
                "worse": False,
                "group": {"entity_type": rule["kind"], "entity": group["entity"]},
                "members": len(rows),
                "ips": [row["member"]] if members["kind"] == "ip" else [],
            }


class Alerting(KeyedProcessFunction):  # type: ignore[misc]
    """Matched steps → alerts, keyed by (rule, entity): one alert per cooldown, escalated in
    place (`cooldown.decide`); the state is cleared by an event-time timer when the cooldown
    ends, so it holds only entities alerted within their cooldown."""

    def __init__(self, rules: dict[str, dict[str, Any]]) -> None:
        self.rules = rules

    def open(self, runtime_context: RuntimeContext) -> None:
        self.raised = runtime_context.get_state(ValueStateDescriptor("raised", Types.STRING()))

    def process_element(self, record: dict[str, Any], ctx: Any) -> Any:
        rule = self.rules[record["rule"]]
        member = record["group"] is not None
        kind = rule["members"]["kind"] if member else rule["kind"]
        severity = rule["severity"]
        if record["worse"] and rule["escalate_to"]:
            severity = rule["escalate_to"]
        previous = self.raised.value()
        decided = cooldown.decide(
            json.loads(previous) if previous else None,
            rule=rule["name"],
            kind=kind,
            entity=record["entity"],
            severity=severity,
            window_us=record["window_us"],
            cooldown_s=rule["cooldown_s"],
        )
        if decided is None:
            return
        state, escalated_from = decided
        self.raised.update(json.dumps(state))
        ends_ms = (state["raised_us"] + rule["cooldown_s"] * 1_000_000) // 1000
        ctx.timer_service().register_event_time_timer(ends_ms)
        names = rule["members"]["evidence"] if member else rule["evidence"]
        values = record["evidence"]
        evidence = {name: cooldown.evidence_number(values.get(name)) for name in names}
        if member:
            explanation = cooldown.explanation(
                rule["members"]["explanation"],
                record["entity"],
                evidence,
                members=record["members"],
                group=record["group"]["entity"],
            )
        else:
            if record["members"] is not None:
                evidence["members"] = record["members"]
            explanation = cooldown.explanation(rule["explanation"], record["entity"], evidence)
        ips = record["ips"]
        if ips is None:
            ips = [record["entity"]] if kind == "ip" else []
        yield json.dumps(
            {
                "alert_id": state["alert_id"],
                "rule": rule["name"],
                "severity": severity,
                "entity_type": kind,
                "entity": record["entity"],
                "first_seen": record["first_seen"],
                "last_seen": record["last_seen"],
                "detected_at": record["detected_at"],
                "count": record["events"],
                "evidence": evidence,
                "explanation": explanation,
                "labels": rule["labels"],
                "escalated_from": escalated_from,
                "ips": ips,
                "group": record["group"],
                "window_start": iso_us(record["window_us"]),
                "incident_id": None,
            }
        )

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        previous = self.raised.value()
        if previous is None:
            return
        rule = self.rules[ctx.get_current_key().split("\x00", 1)[0]]
        state = json.loads(previous)
        if (state["raised_us"] + rule["cooldown_s"] * 1_000_000) // 1000 <= timestamp:
            self.raised.clear()
        yield from ()


def _union(tables: StreamTableEnvironment, rules: list[dict[str, Any]]) -> Any:
    """The rules' matched steps as one data stream."""
    query = "\nUNION ALL\n".join(f"({rule['query']})" for rule in rules)
    return tables.to_data_stream(tables.sql_query(query))


def main() -> None:
    spec = json.loads((HERE / "job.json").read_text())
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(int(os.environ.get("ECOMWATCH_FLINK_PARALLELISM", spec["parallelism"])))
    for module in ("cooldown.py", "crawler_claims.py", "ip_prefix.py"):
        env.add_python_file(str(HERE / module))
    tables = StreamTableEnvironment.create(env)
    tables.get_config().set("table.local-time-zone", "UTC")
    # Windows are dropped by the watermark; the running state of the rules' OVER views (a
    # key's previous event, its counts before a window) expires a day after the key's last
    # event, as the embedded detector forgets an IP (in processing time: Flink's TTL).
    tables.get_config().set("table.exec.state.ttl", "24 h")
    functions = {
        "agent_class": (lambda: AgentClass(spec["search_engines"]), DataTypes.INT()),
        "crawler_class": (lambda: CrawlerClass(spec["crawlers"]), DataTypes.INT()),
        "ipv6_prefix": (lambda: Ipv6Prefix(spec["ipv6_prefix_bits"]), DataTypes.STRING()),
    }
    for name in spec["udfs"]:
        make, result = functions[name]
        tables.create_temporary_function(name, udf(make(), result_type=result))
    tables.execute_sql(spec["source_ddl"])
    tables.execute_sql(spec["sink_ddl"])
    tables.execute_sql(spec["view_sql"])
    if spec.get("passthrough"):  # `ecomwatch bench flink`: Flink's own floor, no rules
        tables.execute_sql(spec["passthrough"]).wait()
        return
    rules = {rule["name"]: rule for rule in spec["rules"]}
    for rule in spec["rules"]:
        for statement in rule["views"]:
            tables.execute_sql(statement)
    records = []
    plain = [rule for rule in spec["rules"] if rule["members"] is None]
    if plain:
        records.append(_union(tables, plain).map(step_record, output_type=RECORD))
    grouped = [rule for rule in spec["rules"] if rule["members"] is not None]
    if grouped:
        records.append(
            _union(tables, grouped)
            .key_by(lambda row: row["rule"] + "\x00" + row["entity"], key_type=Types.STRING())
            .process(Grouping(rules), output_type=RECORD)
        )
    alerts = (
        records[0]
        .union(*records[1:])
        .key_by(lambda record: record["state"], key_type=Types.STRING())
        .process(Alerting(rules), output_type=Types.STRING())
    )
    tables.from_data_stream(alerts).execute_insert("alerts").wait()


if __name__ == "__main__":
    main()
