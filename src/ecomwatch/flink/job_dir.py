"""`ecomwatch flink compile`: a self-contained PyFlink job directory from the rules in force.

JOB_DIR/job.py       the PyFlink program (`pyflink_job.py`)
JOB_DIR/cooldown.py  the alert decision, the embedded detector's own module
JOB_DIR/job.json     source and sink DDL, the view the rules read, one query per rule
JOB_DIR/README.md    how to run it here, on a cluster and on Amazon Managed Service for Flink
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ecomwatch.detect.rules import Rule
from ecomwatch.detect.user_agents import SEARCH_ENGINES
from ecomwatch.flink.compiler import EVENTS_VIEW, CompiledRule, compile_rules
from ecomwatch.flink.connectors import KINESIS_JAR, NO_TIME, Endpoint, sink_ddl, source_ddl

AGENT_FEATURES = {"declared_bot", "search_engine"}


@dataclass(frozen=True)
class CompiledJob:
    directory: Path
    compiled: list[CompiledRule]
    skipped: dict[str, str]  # rule → why it does not compile


def _uses_agents(compiled: list[CompiledRule]) -> bool:
    for item in compiled:
        spec = item.rule.spec
        if AGENT_FEATURES & set(item.rule.features) or (
            spec.filter is not None and any(f in spec.filter for f in AGENT_FEATURES)
        ):
            return True
    return False


def view_sql(*, agents: bool) -> str:
    """The events the rules read: parsed times only, with the user agent's class."""
    agent_code = "agent_class(user_agent)" if agents else "0"
    return f"""CREATE TEMPORARY VIEW {EVENTS_VIEW} AS
SELECT event_ts AS event_time, event_type, product_id, category_id, price, user_id,
    user_session, ip, user_agent, {agent_code} AS agent_code
FROM events
WHERE event_ts > {NO_TIME}"""


def job_spec(
    compiled: list[CompiledRule],
    *,
    source: Endpoint,
    sink: Endpoint,
    lateness_s: float,
    parallelism: int,
) -> dict[str, Any]:
    agents = _uses_agents(compiled)
    return {
        "parallelism": parallelism,
        "source": source.to_text(),
        "sink": sink.to_text(),
        "source_ddl": source_ddl(source, lateness_s=lateness_s),
        "sink_ddl": sink_ddl(sink),
        "view_sql": view_sql(agents=agents),
        "udfs": ["agent_class"] if agents else [],
        "search_engines": SEARCH_ENGINES.pattern,
        "rules": [
            {**item.to_json(), "evidence": ["events", *item.rule.features]} for item in compiled
        ],
    }


def write_job(
    out: Path,
    rules: list[Rule],
    *,
    source: Endpoint,
    sink: Endpoint,
    lateness_s: float,
    parallelism: int = 1,
) -> CompiledJob:
    """Write the job directory for the rules that compile (at least one must)."""
    compiled, skipped = compile_rules(rules)
    if not compiled:
        raise ValueError("no rule compiles for Flink: " + "; ".join(skipped.values()))
    out.mkdir(parents=True, exist_ok=True)
    package = resources.files("ecomwatch")
    spec = job_spec(
        compiled, source=source, sink=sink, lateness_s=lateness_s, parallelism=parallelism
    )
    (out / "job.json").write_text(json.dumps(spec, indent=2) + "\n")
    with resources.as_file(package.joinpath("flink/pyflink_job.py")) as job:
        shutil.copyfile(job, out / "job.py")
    with resources.as_file(package.joinpath("detect/cooldown.py")) as cooldown:
        shutil.copyfile(cooldown, out / "cooldown.py")
    (out / "README.md").write_text(job_readme(spec, skipped))
    return CompiledJob(out, compiled, skipped)


def job_readme(spec: dict[str, Any], skipped: dict[str, str]) -> str:
    rules = "\n".join(f"- `{rule['name']}`" for rule in spec["rules"])
    left_out = "\n".join(f"- `{name}`: {why}" for name, why in skipped.items()) or "- none"
    kinesis = "kinesis:" in spec["source"] or "kinesis:" in spec["sink"]
    jar = (
        f"This job reads or writes Kinesis: add the `{KINESIS_JAR}` jar of your Flink "
        "version (`--jarfile` for `flink run`; the zip's `lib/` for Managed Service)."
        if kinesis
        else "This job uses only connectors inside PyFlink's wheel (filesystem, print)."
    )
    return f"""# ecomwatch detection job for Apache Flink

Written by `ecomwatch flink compile`. Source: `{spec["source"]}`; sink: `{spec["sink"]}`;
parallelism {spec["parallelism"]}. Alerts are JSON lines in the embedded detector's schema, with
the same `alert_id` for the same alert.

## Rules in this job

{rules}

## Rules left out (they run on the embedded engine only, for now)

{left_out}

## Run it

- Here, on a local mini-cluster: `ecomwatch flink run {{this directory}}` (or `python job.py`
  in an environment with `apache-flink==2.3.0` and `crawlerdetect`).
- On a cluster: `flink run --python job.py --pyFiles cooldown.py,job.json`, with the same Python
  packages on the task managers.
- On Amazon Managed Service for Apache Flink: zip `job.py`, `cooldown.py` and `job.json` at
  the zip's top level (connector jars in its `lib/`) and set the application's property group
  `kinesis.analytics.flink.run.options`: `python` = `job.py`, `jarfile` = the jar in `lib/`.

{jar}
"""
