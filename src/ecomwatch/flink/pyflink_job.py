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

import bisect
import json
import math
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.functions import (
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor
from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.udf import ScalarFunction, udf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cooldown  # noqa: E402  (shipped beside this file)
from crawler_claims import ClaimJudge  # noqa: E402  (shipped beside this file)
from ip_prefix import ipv6_prefix  # noqa: E402  (shipped beside this file)
from popularity_operator import with_popularity  # noqa: E402  (shipped beside this file)

EPOCH = datetime(1970, 1, 1)


def epoch_us(moment: datetime) -> int:
    """A naive UTC timestamp (Flink's TIMESTAMP) as epoch microseconds."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# Records between the job's Python operators. A function's state takes its own instance: one
# that has been given to the DataStream API holds a Java handle and cannot be pickled.
RECORD = Types.PICKLED_BYTE_ARRAY()


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


def _row_time(item: dict[str, Any]) -> int:
    """A kept member row's event time (ms): what `Grouping` keeps each member's rows sorted by."""
    return int(item["t_ms"])


class Grouping(KeyedCoProcessFunction):  # type: ignore[misc]
    """A group rule's members and its matched steps, keyed by (rule, group); records for
    `Alerting` out.

    Input 1 is the rule's member rows (`compiler.members_query`: a member's features so far in
    its member window, and whether they meet the member condition; each member's rows in time
    order), kept per member. Input 2 is the group's matched steps, judged by an event-time
    timer at the step (when every member row up to it has come): the group is flagged if at
    least `min` members' latest rows up to the step, in the step's member window, meet the
    condition, and each of those members with it. A member window's rows are dropped when it
    ends, not before: which steps come first must not decide what a step finds."""

    def __init__(self, rules: dict[str, dict[str, Any]]) -> None:
        self.rules = rules

    def open(self, runtime_context: RuntimeContext) -> None:
        self.rows = runtime_context.get_map_state(
            MapStateDescriptor("rows", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        self.steps = runtime_context.get_map_state(
            MapStateDescriptor("steps", Types.LONG(), Types.PICKLED_BYTE_ARRAY())
        )

    def _members(self, ctx: Any) -> dict[str, Any]:
        return self.rules[ctx.get_current_key().split("\x00", 1)[0]]["members"]

    def process_element1(self, row: Any, ctx: Any) -> Any:
        item = {
            "t_ms": epoch_us(row["event_time"]) // 1000,
            "window_ms": int(row["member_window_ms"]),
            "meets": bool(row["meets"]),
            "first_seen": iso(row["first_seen"]),
            "last_seen": iso(row["last_seen"]),
            "events": int(row["events"]),
            "evidence": json.loads(row["evidence"]),
        }
        # Every row is kept until its member window ends, in time order: a step judged later
        # than a later step (the order in which PyFlink hands timers and rows to Python is not
        # guaranteed at parallelism 2) still finds the member's latest row before it.
        rows = self.rows.get(row["member_entity"]) or []
        bisect.insort(rows, item, key=_row_time)
        self.rows.put(row["member_entity"], rows)
        # The member window's end: its rows go then (one timer per key and time).
        length_ms = self._members(ctx)["window_s"] * 1000
        ctx.timer_service().register_event_time_timer(item["window_ms"] + length_ms)
        yield from ()

    def process_element2(self, row: Any, ctx: Any) -> Any:
        at_ms = epoch_us(row["window_time"]) // 1000
        steps = self.steps.get(at_ms) or []
        steps.append(step_record(row))
        self.steps.put(at_ms, steps)
        ctx.timer_service().register_event_time_timer(at_ms)
        yield from ()

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        members = self._members(ctx)
        steps = self.steps.get(timestamp)
        if steps:
            self.steps.remove(timestamp)
            for step in steps:
                yield from self._judge(step, timestamp, members)
        length_ms = members["window_s"] * 1000
        if timestamp % length_ms == 0:  # a member window ended: forget its rows
            self._forget_windows_ended(timestamp, length_ms)

    def _forget_windows_ended(self, now_ms: int, length_ms: int) -> None:
        """Drop the member rows of windows that ended by `now_ms` (and members left with
        none)."""
        changed = {}
        for name, rows in self.rows.items():
            kept = [item for item in rows if item["window_ms"] + length_ms > now_ms]
            if len(kept) != len(rows):
                changed[name] = kept
        for name, kept in changed.items():
            if kept:
                self.rows.put(name, kept)
            else:
                self.rows.remove(name)

    def _judge(self, step: dict[str, Any], at_ms: int, members: dict[str, Any]) -> Any:
        length_ms = members["window_s"] * 1000
        window_ms = step["window_us"] // 1000 // length_ms * length_ms
        found = []
        for name, rows in self.rows.items():
            upto = bisect.bisect_right(rows, at_ms, key=_row_time)  # rows are in time order
            if not upto:
                continue
            latest = rows[upto - 1]
            if latest["meets"] and latest["window_ms"] == window_ms:
                found.append((name, latest))
        group_ips = step["evidence"].get("distinct_ips") or 0
        if len(found) < max(members["min"], math.ceil(members["min_share"] * group_ips)):
            return
        found.sort(key=lambda pair: pair[0])
        ips = members["kind"] == "ip"
        rule = self.rules[step["rule"]]
        yield {
            **step,
            "members": len(found),
            "ips": [name for name, _ in found[:10]] if ips else [],
        }
        for name, item in found:
            yield {
                **step,
                "state": step["rule"] + "\x00" + members["kind"] + ":" + name,
                "entity": name,
                "window_us": item["window_ms"] * 1000,
                "first_seen": item["first_seen"],
                "last_seen": item["last_seen"],
                "events": item["events"],
                "evidence": item["evidence"],
                "worse": False,
                "group": {"entity_type": rule["kind"], "entity": step["entity"]},
                "members": len(found),
                "ips": [name] if ips else [],
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
                "window_start": cooldown.iso_us(record["window_us"]),
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


def _stream(tables: StreamTableEnvironment, queries: list[str]) -> Any:
    """The queries' rows (of one shape) as one data stream."""
    return tables.to_data_stream(
        tables.sql_query("\nUNION ALL\n".join(f"({query})" for query in queries))
    )


def main() -> None:
    spec = json.loads((HERE / "job.json").read_text())
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(int(os.environ.get("ECOMWATCH_FLINK_PARALLELISM", spec["parallelism"])))
    for module in spec["modules"]:  # shipped beside this file
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
    if spec.get("popularity"):
        tables.execute_sql(spec["popularity"]["view_sql"])
        with_popularity(tables, spec)
    tables.execute_sql(spec["view_sql"])
    if spec.get("passthrough"):  # `ecomwatch bench flink`: Flink's own floor, no rules
        tables.execute_sql(spec["passthrough"]).wait()
        return
    rules = {rule["name"]: rule for rule in spec["rules"]}
    for rule in spec["rules"]:
        for statement in rule["views"]:
            tables.execute_sql(statement)
    records = []
    plain = [rule["query"] for rule in spec["rules"] if rule["members"] is None]
    if plain:
        records.append(_stream(tables, plain).map(step_record, output_type=RECORD))
    grouped = [rule for rule in spec["rules"] if rule["members"] is not None]
    if grouped:
        members = _stream(tables, [rule["members"]["query"] for rule in grouped])
        steps = _stream(tables, [rule["query"] for rule in grouped])
        records.append(
            members.connect(steps)
            .key_by(
                lambda row: row["rule"] + "\x00" + row["group_entity"],
                lambda row: row["rule"] + "\x00" + row["entity"],
                key_type=Types.STRING(),
            )
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
