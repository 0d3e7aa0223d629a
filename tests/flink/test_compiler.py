"""The Flink compiler: which rules compile and why not, the SQL it writes, the job directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecomwatch.detect.cooldown import alert_id, decide, explanation
from ecomwatch.detect.rules import RuleSpec, compile_rule, load_rules
from ecomwatch.flink.compiler import (
    compile_rules,
    flink_rule,
    interval,
    members_query,
    rule_query,
    step_ms,
    unsupported,
)
from ecomwatch.flink.connectors import Endpoint, EndpointError, sink_ddl, source_ddl
from ecomwatch.flink.job_dir import view_sql, write_job
from ecomwatch.flink.runner import FlinkRunError, run_job, scratch_environment

ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/shop-events"


def rule(**fields):
    spec = {"name": "r", "key": "ip", "window": "10m", "severity": "high", **fields}
    return compile_rule(RuleSpec.model_validate(spec))


def test_every_default_commerce_rule_compiles_and_the_others_say_why_not():
    compiled, skipped = compile_rules(load_rules([]))
    names = {item.rule.name for item in compiled}
    assert {
        "fast-scraper", "declared-bot", "cart-abuse", "card-testing", "spoofed-crawler",
        "low-and-slow-scraper", "catalogue-walk", "rotating-scraper", "traffic-surge",
        "search-engine-crawler", "flood", "botnet-user-agent", "botnet-subnet",
        "ipv6-rotation", "distributed-hoarding", "category-swarm", "long-tail-swarm",
    } == names  # fmt: skip
    assert len(compiled) + len(skipped) == len(load_rules([]))
    assert skipped and all("web-request feature" in reason for reason in skipped.values())


def test_ratios_divide_as_doubles_and_an_empty_denominator_is_null():
    query = rule_query(rule(condition="distinct_products / views >= 0.6"))
    assert "(CAST(`distinct_products` AS DOUBLE) / NULLIF(CAST(`views` AS DOUBLE), 0))" in query


def test_the_step_is_the_embedded_tick_and_the_window_cumulates_to_its_size():
    assert step_ms(rule(condition="events > 1", window="1h")) == 60_000
    assert step_ms(rule(condition="events > 1", window="10s")) == 1000
    query = rule_query(rule(condition="events > 1", window="30m"))
    assert "CUMULATE(TABLE rule_events, DESCRIPTOR(event_time)" in query
    assert "INTERVAL '30' SECOND(2), INTERVAL '30' MINUTE(2)" in query


def test_members_run_per_member_window_and_only_rows_that_meet_the_condition_leave():
    group = rule(
        key="subnet",
        condition="distinct_ips >= 5",
        members={"key": "ip", "window": "30m", "condition": "events >= 6 and ip_age_s <= 900"},
    )
    query = members_query(group)
    # A running aggregate per (group, member, member window), rows of one time together.
    assert "PARTITION BY group_entity, member_entity, member_window" in query
    assert "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW" in query
    assert "COUNT(*) OVER w AS `events`" in query
    assert "t_s / 1800 AS member_window" in query
    # Epoch milliseconds overflow an INT: the window's start is computed as a BIGINT.
    assert "CAST(member_window AS BIGINT) * 1800000 AS member_window_ms" in query
    assert "WHERE meets OR (seen = 2 AND previous_meets)" in query
    assert "subnet AS group_entity, ip AS member_entity" in query


def test_the_ipv6_prefix_udf_is_called_for_ipv6_rows_only():
    sql = view_sql(["ipv6_prefix"], subnets=True, ip_ages=True)
    plain, _, udf = sql.partition("UNION ALL")
    assert "ipv6_prefix(" not in plain and "'.0/24'" in plain
    assert "COALESCE(ipv6_prefix(ip), ip) AS subnet" in udf
    assert "WHERE POSITION(':' IN ip) > 0" in udf
    assert sql.index("ip_first_s") < sql.index("UNION ALL")  # over both halves
    assert "subnet" not in view_sql([])


def test_long_tail_rules_read_the_popularity_operators_rows(tmp_path):
    swarm = rule(
        key="global",
        condition="views >= 100 and popularity >= 0",
        members={"condition": "longtail_views >= 3 and longtail_share >= 0.75", "min": 20},
    )
    job = write_job(
        tmp_path / "job",
        [swarm],
        source=Endpoint.parse(f"files:{tmp_path}/in", sink=False),
        sink=Endpoint.parse(f"files:{tmp_path}/out", sink=True),
        lateness_s=300,
    )
    spec = json.loads((tmp_path / "job" / "job.json").read_text())
    # The operator reads the base view and gives back its rows with `popularity`, which the
    # rules' view reads (with the event time as `rowtime`, the source's lateness behind it).
    assert spec["popularity"]["view_sql"].startswith("CREATE TEMPORARY VIEW events_base AS")
    assert spec["popularity"]["watermark"] == "rowtime - INTERVAL '5' MINUTE(2)"
    assert "SELECT rowtime AS event_time" in spec["view_sql"]
    assert "FROM events_popular" in spec["view_sql"]
    # Shoppers' views count, not declared bots': the agent UDF runs though no rule reads it.
    assert spec["udfs"] == ["agent_class"]
    assert "agent_class(user_agent) AS agent_code" in spec["popularity"]["view_sql"]
    # Only views with a known popularity count in the share (as DuckDB's FILTER does).
    members = job.compiled[0].members or ""
    assert "AVG(CASE WHEN event_type = 'view' AND popularity IS NOT NULL THEN" in members
    assert "THEN 1 ELSE 0 END) OVER w AS `longtail_views`" in members
    for module in ("product_popularity.py", "popularity_operator.py"):
        assert (tmp_path / "job" / module).is_file()
    # Without such a rule, no operator and no agent UDF.
    write_job(
        tmp_path / "plain",
        [rule(condition="events >= 5")],
        source=Endpoint.parse(f"files:{tmp_path}/in", sink=False),
        sink=Endpoint.parse(f"files:{tmp_path}/out", sink=True),
        lateness_s=300,
    )
    plain = json.loads((tmp_path / "plain" / "job.json").read_text())
    assert plain["popularity"] is None and plain["udfs"] == []
    assert "events_popular" not in plain["view_sql"]


def test_intervals_use_the_largest_whole_unit():
    assert interval(3600) == "INTERVAL '1' HOUR(2)"
    assert interval(300) == "INTERVAL '5' MINUTE(2)"
    assert interval(90) == "INTERVAL '90' SECOND(2)"
    assert interval(86_400) == "INTERVAL '24' HOUR(2)"


def test_rules_flink_cannot_express_yet_say_so():
    assert "web-request feature" in unsupported(rule(condition="sqli_probes >= 1"))
    assert "ordered or baseline" in unsupported(
        rule(key="subnet", condition="events > 1", members={"condition": "gap_cv < 0.1"})
    )
    assert unsupported(rule(condition="ip_age_s <= 60")) is None
    assert "60 steps" in unsupported(rule(condition="events > 1", window="61s"))
    assert unsupported(rule(condition="views >= 3", filter="event_type == 'view'")) is None


def test_ordered_features_read_each_rows_own_predecessor_in_the_window():
    compiled = flink_rule(rule(condition="gap_cv <= 0.5", window="1h"), 3)
    (view,) = compiled.views
    assert view.startswith("CREATE TEMPORARY VIEW rule_events_3 AS")
    assert "PARTITION BY ip ORDER BY event_time" in view
    assert "ROWS BETWEEN 1 PRECEDING AND CURRENT ROW" in view
    assert "prev_s / 3600 = t_s / 3600" in view  # the previous row is in the same window
    assert "CUMULATE(TABLE rule_events_3," in compiled.query


def test_a_global_baseline_counts_what_came_before_the_window_over_the_whole_stream():
    compiled = flink_rule(rule(key="global", condition="events >= 5 * baseline", window="1m"), 0)
    (view,) = compiled.views
    assert "COUNT(DISTINCT t_s / 60) OVER w - 1 AS windows_before" in view
    assert "(ORDER BY event_time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)" in view
    assert "GROUP BY window_start, window_end, window_time" in compiled.query


def test_the_filter_compiles_for_commerce_events():
    query = rule_query(rule(condition="events > 1", filter="static == 0 and declared_bot == 1"))
    assert "((0 = 0) AND (CASE WHEN agent_code >= 1 THEN 1 ELSE 0 END = 1))" in query


def test_kinesis_tables_carry_the_options_the_connector_requires():
    ddl = source_ddl(Endpoint.parse(f"kinesis:{ARN}", sink=False), lateness_s=300)
    for option in (
        "'connector' = 'kinesis'",
        f"'stream.arn' = '{ARN}'",
        "'aws.region' = 'eu-west-1'",
        "'source.init.position' = 'TRIM_HORIZON'",
        "'format' = 'json'",
    ):
        assert option in ddl
    assert "WATERMARK FOR event_ts AS event_ts - INTERVAL '5' MINUTE(2)" in ddl
    sink = sink_ddl(Endpoint.parse(f"kinesis:{ARN}", sink=True))
    assert "'aws.region' = 'eu-west-1'" in sink and "'format' = 'raw'" in sink


@pytest.mark.parametrize(
    ("text", "sink"),
    [("kinesis:not-an-arn", False), ("print", False), ("s3:bucket", True), ("files:", True)],
)
def test_endpoints_that_are_not_understood_are_refused(text, sink):
    with pytest.raises(EndpointError):
        Endpoint.parse(text, sink=sink)


def test_a_relative_file_path_is_made_absolute_for_the_job_that_runs_elsewhere(tmp_path):
    source = Endpoint.parse("files:shop.csv", sink=False)
    assert Path(source.target).is_absolute() and source.target.endswith("/shop.csv")
    assert Endpoint.parse("files:s3://bucket/events", sink=False).target == "s3://bucket/events"


def test_the_job_directory_is_self_contained(tmp_path):
    job = write_job(
        tmp_path / "job",
        load_rules([]),
        source=Endpoint.parse(f"files:{tmp_path}/in", sink=False),
        sink=Endpoint.parse("print", sink=True),
        lateness_s=300,
    )
    names = sorted(p.name for p in job.directory.iterdir())
    assert names == [
        "README.md", "cooldown.py", "crawler_claims.py", "ip_prefix.py", "job.json", "job.py",
        "popularity_operator.py", "product_popularity.py",
    ]  # fmt: skip
    spec = json.loads((job.directory / "job.json").read_text())
    assert sorted(spec["modules"]) == [n for n in names if n.endswith(".py") and n != "job.py"]
    assert [r["name"] for r in spec["rules"]] == [item.rule.name for item in job.compiled]
    # declared-bot reads the user agent's class, spoofed-crawler the crawler claims, the
    # subnet rules an IPv6 address's prefix
    assert spec["udfs"] == ["agent_class", "crawler_class", "ipv6_prefix"]
    readme = (job.directory / "README.md").read_text()
    assert "`sensitive-file-probe`: feature" in readme and "flink run --python job.py" in readme


def test_a_missing_flink_environment_says_how_to_make_one(tmp_path, monkeypatch):
    write_job(
        tmp_path / "job",
        load_rules([]),
        source=Endpoint.parse(f"files:{tmp_path}/in", sink=False),
        sink=Endpoint.parse("print", sink=True),
        lateness_s=5,
    )
    monkeypatch.setenv("ECOMWATCH_FLINK_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(FlinkRunError, match="make flink"):
        run_job(tmp_path / "job")
    with pytest.raises(FlinkRunError, match="flink compile"):
        run_job(Path(tmp_path))


def test_cooldown_holds_escalates_in_place_and_ends():
    first = decide(None, rule="r", kind="ip", entity="1.2.3.4", severity="medium",
                   window_us=0, cooldown_s=600)  # fmt: skip
    assert first is not None
    state, escalated = first
    assert escalated is None and state["alert_id"] == alert_id("r", "ip", "1.2.3.4", 0)
    held = decide(state, rule="r", kind="ip", entity="1.2.3.4", severity="medium",
                  window_us=60_000_000, cooldown_s=600)  # fmt: skip
    assert held is None
    worse = decide(state, rule="r", kind="ip", entity="1.2.3.4", severity="high",
                   window_us=60_000_000, cooldown_s=600)  # fmt: skip
    assert worse is not None
    assert worse[0]["alert_id"] == state["alert_id"] and worse[1] == "medium"
    assert worse[0]["raised_us"] == 0  # the cooldown still runs from the first alert
    later = decide(worse[0], rule="r", kind="ip", entity="1.2.3.4", severity="medium",
                   window_us=600_000_000, cooldown_s=600)  # fmt: skip
    assert later is not None and later[0]["alert_id"] != state["alert_id"]


def test_an_entity_with_braces_cannot_rewrite_the_explanation():
    text = explanation("ip {entity} matched ({evidence})", "{evidence}", {"events": 3})
    assert text == "ip {evidence} matched (events=3)"


def test_flink_compile_takes_the_ipv6_prefix_from_the_config(tmp_path):
    config = tmp_path / "ecomwatch.toml"
    config.write_text("[detect]\nipv6_prefix = 48\n")
    done = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "flink", "compile",
         "--source", f"files:{tmp_path}/in", "--sink", "print",
         "--out", str(tmp_path / "job"), "--config", str(config)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "job" / "job.json").read_text())
    assert spec["ipv6_prefix_bits"] == 48 and "ipv6_prefix" in spec["udfs"]


def test_a_job_s_temporary_files_go_to_its_scratch_unless_the_caller_chose_a_place(tmp_path):
    scratch = tmp_path / "job"
    env = scratch_environment({"JVM_ARGS": "-Xmx1g", "PATH": "/bin"}, scratch)
    assert env["JVM_ARGS"] == f"-Xmx1g -Djava.io.tmpdir={scratch}"
    assert env["TMPDIR"] == str(scratch) and env["PATH"] == "/bin"
    assert scratch_environment({}, scratch)["JVM_ARGS"] == f"-Djava.io.tmpdir={scratch}"
    chosen = scratch_environment({"JVM_ARGS": "-Djava.io.tmpdir=/data/tmp -Xmx1g"}, scratch)
    assert chosen["JVM_ARGS"] == "-Djava.io.tmpdir=/data/tmp -Xmx1g"
    assert chosen["TMPDIR"] == str(scratch)
