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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.udf import ScalarFunction, udf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cooldown  # noqa: E402  (shipped beside this file)
from crawler_claims import ClaimJudge  # noqa: E402  (shipped beside this file)

EPOCH = datetime(1970, 1, 1)


def epoch_us(moment: datetime) -> int:
    """A naive UTC timestamp (Flink's TIMESTAMP) as epoch microseconds."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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


class Alerting(KeyedProcessFunction):  # type: ignore[misc]
    """Matched steps → alerts, keyed by (rule, entity): one alert per cooldown, escalated in
    place (`cooldown.decide`); the state is cleared by an event-time timer when the cooldown
    ends, so it holds only entities alerted within their cooldown."""

    def __init__(self, rules: dict[str, dict[str, Any]]) -> None:
        self.rules = rules

    def open(self, runtime_context: RuntimeContext) -> None:
        self.raised = runtime_context.get_state(ValueStateDescriptor("raised", Types.STRING()))

    def process_element(self, row: Any, ctx: Any) -> Any:
        rule = self.rules[row["rule"]]
        window_us = epoch_us(row["window_start"])
        severity = rule["escalate_to"] if row["worse"] and rule["escalate_to"] else rule["severity"]
        previous = self.raised.value()
        decided = cooldown.decide(
            json.loads(previous) if previous else None,
            rule=rule["name"],
            kind=rule["kind"],
            entity=row["entity"],
            severity=severity,
            window_us=window_us,
            cooldown_s=rule["cooldown_s"],
        )
        if decided is None:
            return
        state, escalated_from = decided
        self.raised.update(json.dumps(state))
        ends_ms = (state["raised_us"] + rule["cooldown_s"] * 1_000_000) // 1000
        ctx.timer_service().register_event_time_timer(ends_ms)
        values = json.loads(row["evidence"])
        evidence = {name: cooldown.evidence_number(values.get(name)) for name in rule["evidence"]}
        yield json.dumps(
            {
                "alert_id": state["alert_id"],
                "rule": rule["name"],
                "severity": severity,
                "entity_type": rule["kind"],
                "entity": row["entity"],
                "first_seen": iso(row["first_seen"]),
                "last_seen": iso(row["last_seen"]),
                # As on the embedded engine: the event time judged up to (the step's end).
                "detected_at": iso(row["window_time"]),
                "count": int(row["events"]),
                "evidence": evidence,
                "explanation": cooldown.explanation(rule["explanation"], row["entity"], evidence),
                "labels": rule["labels"],
                "escalated_from": escalated_from,
                "ips": [row["entity"]] if rule["kind"] == "ip" else [],
                "group": None,
                "window_start": iso(row["window_start"]),
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


def main() -> None:
    spec = json.loads((HERE / "job.json").read_text())
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(int(os.environ.get("ECOMWATCH_FLINK_PARALLELISM", spec["parallelism"])))
    env.add_python_file(str(HERE / "cooldown.py"))
    env.add_python_file(str(HERE / "crawler_claims.py"))
    tables = StreamTableEnvironment.create(env)
    tables.get_config().set("table.local-time-zone", "UTC")
    # Windows are dropped by the watermark; the running state of the rules' OVER views (a
    # key's previous event, its counts before a window) expires a day after the key's last
    # event, as the embedded detector forgets an IP (in processing time: Flink's TTL).
    tables.get_config().set("table.exec.state.ttl", "24 h")
    functions = {
        "agent_class": lambda: AgentClass(spec["search_engines"]),
        "crawler_class": lambda: CrawlerClass(spec["crawlers"]),
    }
    for name in spec["udfs"]:
        tables.create_temporary_function(name, udf(functions[name](), result_type=DataTypes.INT()))
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
    matched = tables.sql_query("\nUNION ALL\n".join(f"({rule['query']})" for rule in spec["rules"]))
    alerts = (
        tables.to_data_stream(matched)
        .key_by(lambda row: row["rule"] + "\x00" + row["entity"], key_type=Types.STRING())
        .process(Alerting(rules), output_type=Types.STRING())
    )
    tables.from_data_stream(alerts).execute_insert("alerts").wait()


if __name__ == "__main__":
    main()
