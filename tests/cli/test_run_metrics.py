"""`ecomwatch run --metrics emf|cloudwatch`: a run's figures as Embedded Metric Format lines and
in CloudWatch (moto's server), adding up to the run's own summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ecomwatch.sinks.emf import MAX_VALUES, contexts, histogram_values
from tests.kinesis_servers import CREDENTIALS, create_stream
from tests.sinks.test_cloudwatch import _client, metric_sum
from tests.sources.test_kinesis import shop_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rules"
ATTACK = EXAMPLE / "scraper-slow-hoarder-office.csv"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "run", *args],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False,
    )  # fmt: skip


def _with_bad_rows(tmp_path: Path) -> Path:
    """A shop file and two rows that are rejected for two different reasons."""
    path = shop_file(tmp_path, 1_500, seed=31)
    last = path.read_text().splitlines()[-1]
    with path.open("a") as out:
        out.write(last.replace(",view,", ",hover,").replace(",cart,", ",hover,") + "\n")
        out.write("not,a,row\n")
    return path


def _config(tmp_path: Path, pipeline: str, **extra: str) -> Path:
    config = tmp_path / "metrics.toml"
    lines = [f'pipeline = "{pipeline}"', "interval_s = 1"]
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    config.write_text("[metrics]\n" + "\n".join(lines) + "\n")
    return config


def _documents(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _emf_sum(documents: list[dict[str, Any]], metric: str, **dimensions: str) -> float:
    """The sum of a metric over the documents whose dimension set is exactly `dimensions`."""
    total = 0.0
    for doc in documents:
        [directive] = doc["_aws"]["CloudWatchMetrics"]
        if directive["Dimensions"] != [sorted(dimensions)] or metric not in doc:
            continue
        if any(doc[k] != v for k, v in dimensions.items()):
            continue
        value = doc[metric]
        total += sum(value) if isinstance(value, list) else value
    return total


def test_run_writes_emf_lines_that_add_up_to_its_summary(tmp_path: Path) -> None:
    data = _with_bad_rows(tmp_path)
    emf = tmp_path / "emf.log"
    config = _config(tmp_path, "nightly", emf_path=str(emf))
    run = _run(
        str(data), str(ATTACK), "--lake", str(tmp_path / "lake"), "--alerts",
        str(tmp_path / "alerts.jsonl"), "--metrics", "emf", "--config", str(config), "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)  # standard output holds the summary alone
    documents = _documents(emf)
    for doc in documents:
        [directive] = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "ecomwatch" and doc["pipeline"] == "nightly"
        assert all(name in doc for names in directive["Dimensions"] for name in names)
        assert {m["Name"] for m in directive["Metrics"]} <= set(doc) and doc["_aws"]["Timestamp"]
    assert _emf_sum(documents, "EventsAccepted", pipeline="nightly") == summary["accepted"]
    assert _emf_sum(documents, "EventsRejected", pipeline="nightly") == summary["rejected"] == 2
    for reason in ("unknown_event_type", "wrong_field_count"):
        assert _emf_sum(documents, "EventsRejected", pipeline="nightly", reason=reason) == 1
    raised = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    high = sum(1 for alert in raised if alert["severity"] == "high")
    assert high >= 3  # the example's scraper, hoarder and cart abuser
    assert _emf_sum(documents, "Alerts", pipeline="nightly", severity="high") == high
    assert _emf_sum(documents, "Alerts", pipeline="nightly") == len(raised)
    assert _emf_sum(documents, "LakeCommitSeconds", pipeline="nightly") > 0
    assert "emf: " in run.stderr and "datum(s) published" in run.stderr


def test_emf_on_standard_output_and_json_cannot_share_it(tmp_path: Path) -> None:
    data = shop_file(tmp_path, 200, seed=32)
    both = _run(str(data), "--lake", str(tmp_path / "lake"), "--metrics", "emf", "--json")
    assert both.returncode != 0 and "emf_path" in both.stdout + both.stderr
    alone = _run(str(data), "--lake", str(tmp_path / "lake"), "--metrics", "emf")
    assert alone.returncode == 0, alone.stderr
    documents = [json.loads(line) for line in alone.stdout.splitlines() if '"_aws"' in line]
    assert _emf_sum(documents, "EventsAccepted", pipeline="default") == 200
    wrong = _run(str(data), "--lake", str(tmp_path / "lake"), "--metrics", "statsd")
    assert wrong.returncode != 0 and "cloudwatch or emf" in wrong.stdout + wrong.stderr


def test_emf_documents_keep_the_formats_limits() -> None:
    stamp = datetime(2026, 12, 1, tzinfo=UTC)
    pipeline = [{"Name": "pipeline", "Value": "p"}]
    datums = [
        {"MetricName": f"M{i}", "Dimensions": pipeline, "Timestamp": stamp, "Unit": "Count",
         "Value": float(i)}
        for i in range(150)
    ]  # fmt: skip
    datums.append({
        "MetricName": "BatchLatencySeconds", "Dimensions": pipeline, "Timestamp": stamp,
        "Unit": "Seconds", "Values": [0.1, 1.0], "Counts": [3.0, 1.0],
    })  # fmt: skip
    [context] = contexts(datums, "ns")
    from aws_embedded_metrics.serializers.log_serializer import LogSerializer

    documents = [json.loads(line) for line in LogSerializer.serialize(context)]
    assert len(documents) >= 2  # 151 metrics: more than one document holds
    seen: dict[str, Any] = {}
    for doc in documents:
        [directive] = doc["_aws"]["CloudWatchMetrics"]
        assert len(directive["Metrics"]) <= 100
        seen |= {m["Name"]: doc[m["Name"]] for m in directive["Metrics"]}
    assert len(seen) == 151 and seen["M149"] == 149.0
    assert sorted(seen["BatchLatencySeconds"]) == [0.1, 0.1, 0.1, 1.0]
    many = histogram_values([0.1, 1.0], [30_000.0, 10_000.0])
    assert len(many) == MAX_VALUES and many.count(0.1) == 3 * many.count(1.0)


@pytest.mark.integration
def test_run_publishes_to_cloudwatch(moto_kinesis: str, tmp_path: Path) -> None:
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": moto_kinesis}
    pipeline = f"run-{time.monotonic_ns()}"
    data = _with_bad_rows(tmp_path)
    run = _run(
        str(data), str(ATTACK), "--lake", str(tmp_path / "lake"), "--alerts",
        str(tmp_path / "alerts.jsonl"), "--metrics", "cloudwatch",
        "--config", str(_config(tmp_path, pipeline)), "--json", env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "cloudwatch: " in run.stderr and "failed" not in run.stderr, run.stderr
    summary = json.loads(run.stdout)
    client = _client(moto_kinesis)
    assert metric_sum(client, "EventsAccepted", {"pipeline": pipeline}) == summary["accepted"]
    rejected = {"pipeline": pipeline, "reason": "wrong_field_count"}
    assert metric_sum(client, "EventsRejected", rejected) == 1
    assert metric_sum(client, "Alerts", {"pipeline": pipeline}) > 0
    assert metric_sum(client, "LakeCommits", {"pipeline": pipeline}, "Maximum") >= 1


@pytest.mark.integration
def test_a_stream_run_publishes_each_shards_lag(moto_kinesis: str, tmp_path: Path) -> None:
    env = {
        **CREDENTIALS, "AWS_ENDPOINT_URL": moto_kinesis,
        "ECOMWATCH_SERVE__COMMIT_SECONDS": "0.5", "ECOMWATCH_KINESIS__IDLE_POLL_S": "0.2",
    }  # fmt: skip
    name = f"metered-{time.monotonic_ns()}"
    create_stream(moto_kinesis, name, 2)
    put = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "replay", str(shop_file(tmp_path, 800)),
         "--to", f"kinesis://{name}"],
        env={**os.environ, **env}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert put.returncode == 0, put.stderr
    config = _config(tmp_path, name)
    run = _run(
        f"kinesis://{name}", "--lake", str(tmp_path / "lake"), "--until-caught-up",
        "--metrics", "cloudwatch", "--config", str(config), "--json", env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    shards = json.loads(run.stdout)["shards"]
    client = _client(moto_kinesis)
    assert metric_sum(client, "EventsAccepted", {"pipeline": name}) == 800
    for shard in shards:
        lag = {"pipeline": name, "shard": shard, "stream": f"kinesis://{name}"}
        assert metric_sum(client, "KinesisMillisBehindLatest", lag, "SampleCount") > 0
        assert metric_sum(client, "KinesisMillisBehindLatest", lag, "Minimum") == 0
