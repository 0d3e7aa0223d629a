"""`ecomwatch flink compile`: a self-contained PyFlink job directory from the rules in force.

JOB_DIR/job.py       the PyFlink program (`pyflink_job.py`)
JOB_DIR/cooldown.py  the alert decision, the embedded detector's own module
JOB_DIR/crawler_claims.py  crawler claims judged against the published ranges
JOB_DIR/ip_prefix.py  an IPv6 address's subnet
JOB_DIR/product_popularity.py  how popular each product is (for the long-tail features)
JOB_DIR/popularity_operator.py  the job's operator that counts it
JOB_DIR/job.json     source and sink DDL, the view the rules read, one query per rule
JOB_DIR/README.md    how to run it here, on a cluster and on Amazon Managed Service for Flink
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ecomwatch.detect.crawlers import CLAIMS, OWNED, load_lists
from ecomwatch.detect.entity_keys import IPV4
from ecomwatch.detect.ip_prefix import IPV6_PREFIX
from ecomwatch.detect.rules import KeyKind, Rule
from ecomwatch.detect.user_agents import SEARCH_ENGINES
from ecomwatch.flink.compiler import (
    EPOCH_S,
    EVENTS_VIEW,
    CompiledRule,
    compile_rules,
    interval,
)
from ecomwatch.flink.connectors import KINESIS_JAR, NO_TIME, Endpoint, sink_ddl, source_ddl

# Modules the job runs beside job.py, copied from ecomwatch: the same code on both engines.
SHIPPED = (
    "detect/cooldown.py",
    "detect/crawler_claims.py",
    "detect/ip_prefix.py",
    "detect/product_popularity.py",
    "flink/popularity_operator.py",
)
# The events before the job's `Popularity` operator, and the table it gives back (the same
# rows with each one's `popularity`, `rowtime` its event time), when a rule reads popularity.
BASE_VIEW = "events_base"
POPULAR_TABLE = "events_popular"


@dataclass(frozen=True)
class CompiledJob:
    directory: Path
    compiled: list[CompiledRule]
    skipped: dict[str, str]  # rule → why it does not compile


def _udfs(compiled: list[CompiledRule]) -> list[str]:
    """The UDF columns the queries read (each costs a Python call per event)."""
    columns = {
        "agent_code": "agent_class",
        "crawler_code": "crawler_class",
    }
    # Popularity counts shoppers' views, not declared bots' (`agent_code`).
    needed = {column for column in columns if any(column in c.sql for c in compiled)}
    if _popularity(compiled):
        needed.add("agent_code")
    udfs = [udf for column, udf in columns.items() if column in needed]
    return [*udfs, *(["ipv6_prefix"] if _subnets(compiled) else [])]


def _subnets(compiled: list[CompiledRule]) -> bool:
    return any(KeyKind.SUBNET in c.keys for c in compiled)


def _popularity(compiled: list[CompiledRule]) -> bool:
    return any("popularity" in c.sql for c in compiled)


def crawler_ranges() -> dict[str, Any]:
    """What `crawler_claims.ClaimJudge` needs: the claims, each operator's newest list (the
    shipped snapshot or an installed one, as the embedded detector loads them), owned blocks."""
    return {
        "claims": CLAIMS,
        "ranges": {op: [str(n) for n in found.networks] for op, found in load_lists().items()},
        "owned": {op: list(blocks) for op, blocks in OWNED.items()},
    }


def base_columns(udfs: list[str]) -> dict[str, str]:
    """The base view's columns after its event time, each with its SQL over the source."""
    source = (
        "event_type", "product_id", "category_id", "price", "user_id", "user_session", "ip",
        "user_agent",
    )  # fmt: skip
    return {
        **{name: name for name in source},
        "agent_code": "agent_class(user_agent)" if "agent_class" in udfs else "0",
        "crawler_code": "crawler_class(user_agent, ip)" if "crawler_class" in udfs else "0",
        "t_s": EPOCH_S.format("event_ts"),
    }


def base_sql(udfs: list[str]) -> str:
    """The source's events with parsed times only, the UDFs' columns and the time in epoch
    seconds (`t_s`)."""
    columns = ", ".join(
        name if sql == name else f"{sql} AS {name}" for name, sql in base_columns(udfs).items()
    )
    return f"""SELECT event_ts AS event_time, {columns}
FROM events
WHERE event_ts > {NO_TIME}"""


def view_sql(
    udfs: list[str], *, ip_ages: bool = False, subnets: bool = False, popularity: bool = False
) -> str:
    """The events the rules read (`base_sql`); when a rule reads popularity, the `Popularity`
    operator's rows instead (`POPULAR_TABLE`, made from `BASE_VIEW`); when a rule groups by
    subnet, each row's `subnet` (an IPv4 address's /24 in SQL, an IPv6 address's prefix by the
    `ipv6_prefix` UDF, called for IPv6 rows only: a Python call per row costs more than the
    SQL); when a rule reads `ip_age_s`, when each row's IP was first seen (`ip_first_s`: a
    running minimum over its events)."""
    rows = base_sql(udfs)
    if popularity:
        rows = f"SELECT rowtime AS event_time, {', '.join(base_columns(udfs))}, popularity\n"
        rows += f"FROM {POPULAR_TABLE}"
    if subnets:
        rows = f"""SELECT *, CASE WHEN REGEXP(ip, '{IPV4}')
        THEN REGEXP_REPLACE(ip, '\\.\\d+$', '.0/24') ELSE ip END AS subnet
FROM ({rows})
WHERE ip IS NULL OR POSITION(':' IN ip) = 0
UNION ALL
SELECT *, COALESCE(ipv6_prefix(ip), ip) AS subnet
FROM ({rows})
WHERE POSITION(':' IN ip) > 0"""
    if ip_ages:
        rows = f"""SELECT *, MIN(t_s) OVER (PARTITION BY ip ORDER BY event_time
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS ip_first_s
FROM ({rows})"""
    return f"CREATE TEMPORARY VIEW {EVENTS_VIEW} AS\n{rows}"


def job_spec(
    compiled: list[CompiledRule],
    *,
    source: Endpoint,
    sink: Endpoint,
    lateness_s: float,
    parallelism: int,
    ipv6_prefix_bits: int = IPV6_PREFIX,
) -> dict[str, Any]:
    udfs = _udfs(compiled)
    return {
        "parallelism": parallelism,
        "source": source.to_text(),
        "sink": sink.to_text(),
        "lateness_s": lateness_s,
        "source_ddl": source_ddl(source, lateness_s=lateness_s),
        "sink_ddl": sink_ddl(sink),
        # With popularity, the job makes `POPULAR_TABLE` of this view before `view_sql`.
        "popularity": (
            {
                "view_sql": f"CREATE TEMPORARY VIEW {BASE_VIEW} AS\n{base_sql(udfs)}",
                "view": BASE_VIEW,
                "table": POPULAR_TABLE,
                "watermark": f"rowtime - {interval(math.ceil(lateness_s))}",
            }
            if _popularity(compiled)
            else None
        ),
        "view_sql": view_sql(
            udfs,
            ip_ages=any("ip_first_s" in c.sql for c in compiled),
            subnets=_subnets(compiled),
            popularity=_popularity(compiled),
        ),
        "ipv6_prefix_bits": ipv6_prefix_bits,
        "udfs": udfs,
        "search_engines": SEARCH_ENGINES.pattern,
        "crawlers": crawler_ranges(),
        "rules": [item.to_json() for item in compiled],
        "modules": [Path(module).name for module in SHIPPED],
    }


def write_job(
    out: Path,
    rules: list[Rule],
    *,
    source: Endpoint,
    sink: Endpoint,
    lateness_s: float,
    parallelism: int = 1,
    ipv6_prefix_bits: int = IPV6_PREFIX,
) -> CompiledJob:
    """Write the job directory for the rules that compile (at least one must)."""
    compiled, skipped = compile_rules(rules)
    if not compiled:
        raise ValueError("no rule compiles for Flink: " + "; ".join(skipped.values()))
    out.mkdir(parents=True, exist_ok=True)
    package = resources.files("ecomwatch")
    spec = job_spec(
        compiled,
        source=source,
        sink=sink,
        lateness_s=lateness_s,
        parallelism=parallelism,
        ipv6_prefix_bits=ipv6_prefix_bits,
    )
    (out / "job.json").write_text(json.dumps(spec, indent=2) + "\n")
    with resources.as_file(package.joinpath("flink/pyflink_job.py")) as job:
        shutil.copyfile(job, out / "job.py")
    for module in SHIPPED:
        with resources.as_file(package.joinpath(module)) as path:
            shutil.copyfile(path, out / path.name)
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
- On a cluster: `flink run --python job.py --pyFiles
  cooldown.py,crawler_claims.py,ip_prefix.py,product_popularity.py,popularity_operator.py,job.json`,
  with the same Python packages on the task managers.
- On Amazon Managed Service for Apache Flink: zip `job.py`, `job.json` and the five modules at
  the zip's top level (connector jars in its `lib/`) and set the application's property group
  `kinesis.analytics.flink.run.options`: `python` = `job.py`, `jarfile` = the jar in `lib/`.

{jar}
"""
