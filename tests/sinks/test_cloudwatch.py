"""The service's metrics in CloudWatch (moto's server on loopback), read back with
GetMetricData: counters as their increase per interval, gauges as values, histograms by bucket;
a CloudWatch that cannot be reached keeps the datums for the next interval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ecomwatch import testing_servers as servers
from ecomwatch.sinks.cloudwatch import MetricsPublisher, PutMetricData
from tests.kinesis_servers import CREDENTIALS

pytestmark = pytest.mark.integration


def _client(endpoint: str, attempts: int = 3) -> Any:
    return boto3.client(
        "cloudwatch", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=BotoConfig(retries={"mode": "standard", "max_attempts": attempts},
                          connect_timeout=1, read_timeout=5),
    )  # fmt: skip


def metric_sum(client: Any, name: str, dimensions: dict[str, str], stat: str = "Sum") -> float:
    """The statistic over the last hour. The answer can come in two periods (when the points
    straddle a period's edge): sums add up, a maximum is the larger (a minimum the smaller)."""
    now = datetime.now(UTC)
    answer = client.get_metric_data(
        MetricDataQueries=[{
            "Id": "m", "ReturnData": True,
            "MetricStat": {"Stat": stat, "Period": 3600, "Metric": {
                "Namespace": "ecomwatch", "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()]}},
        }],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
    )  # fmt: skip
    values = answer["MetricDataResults"][0]["Values"]
    if stat in ("Maximum", "Minimum"):
        return float((max if stat == "Maximum" else min)(values, default=0.0))
    return float(sum(values))


def _registry() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    r = CollectorRegistry()
    alerts = Counter("ecomwatch_alerts", "x", ["rule", "severity"], registry=r)
    lag = Gauge("ecomwatch_watermark_lag_seconds", "x", registry=r)
    latency = Histogram("ecomwatch_batch_latency_seconds", "x", buckets=(0.1, 1.0), registry=r)
    return r, alerts, lag, latency


def test_counters_go_out_as_increases_gauges_as_values_histograms_by_bucket(moto_kinesis):
    client = _client(moto_kinesis)
    registry, alerts, lag, latency = _registry()
    publisher = MetricsPublisher(PutMetricData(client), registry, pipeline="t1")
    alerts.labels(rule="flood", severity="high").inc(3)
    lag.set(2.5)
    for seconds in (0.05, 0.5, 0.7, 3.0):
        latency.observe(seconds)
    publisher.publish()
    alerts.labels(rule="flood", severity="high").inc(2)  # 5 in all: 3 then 2 more
    publisher.publish()
    assert publisher.failed_calls == 0 and publisher.unsent == 0
    flood = {"pipeline": "t1", "rule": "flood", "severity": "high"}
    assert metric_sum(client, "Alerts", flood) == 5
    alerts.labels(rule="cart-abuse", severity="high").inc(4)
    publisher.publish()
    high = {"pipeline": "t1", "severity": "high"}  # summed over the rules
    assert metric_sum(client, "Alerts", high) == 9
    assert metric_sum(client, "Alerts", {"pipeline": "t1"}) == 9
    assert metric_sum(client, "WatermarkLagSeconds", {"pipeline": "t1"}, "Maximum") == 2.5
    assert metric_sum(client, "BatchLatencySeconds", {"pipeline": "t1"}, "SampleCount") == 4


def test_an_unreachable_cloudwatch_keeps_the_datums_for_the_next_interval(moto_kinesis):
    registry, alerts, _, _ = _registry()
    down = _client(f"http://127.0.0.1:{servers.free_port()}", attempts=1)
    publisher = MetricsPublisher(PutMetricData(down), registry, pipeline="t2")
    alerts.labels(rule="fast-scraper", severity="medium").inc(7)
    started = time.monotonic()
    publisher.publish()  # returns, does not raise
    assert time.monotonic() - started < 30
    assert publisher.failed_calls == 1 and publisher.unsent > 0 and publisher.error
    publisher.sender = PutMetricData(_client(moto_kinesis))
    publisher.publish()
    assert publisher.unsent == 0
    scraper = {"pipeline": "t2", "rule": "fast-scraper", "severity": "medium"}
    assert metric_sum(_client(moto_kinesis), "Alerts", scraper) == 7


def test_serve_publishes_its_figures(moto_kinesis, tmp_path: Path):
    """`serve --metrics cloudwatch` every second: the events it accepted are in CloudWatch."""
    from tests.serve.conftest import start_server
    from tests.serve.test_collector_api import event

    config = tmp_path / "metrics.toml"
    config.write_text('[metrics]\npipeline = "served"\ninterval_s = 1\n')
    running = start_server(
        tmp_path / "lake",
        env={**CREDENTIALS, "AWS_ENDPOINT_URL": moto_kinesis},
        extra=("--metrics", "cloudwatch", "--config", str(config)),
    )
    assert running.post_events([event(i) for i in range(120)])[0] == 200
    time.sleep(2.5)
    stderr = running.stop()
    assert "datum(s) published" in stderr and "failed" not in stderr, stderr
    client = _client(moto_kinesis)
    assert metric_sum(client, "EventsAccepted", {"pipeline": "served"}) == 120
    assert metric_sum(client, "CheckpointAgeSeconds", {"pipeline": "served"}, "SampleCount") > 0
    listed = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "aws", "metrics", "--pipeline", "served",
         "--json"],
        env={**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": moto_kinesis},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures = {(f["metric"], tuple(f["dimensions"].items())): f for f in json.loads(listed.stdout)}
    assert figures[("EventsAccepted", ())]["sum"] == 120  # each metric once, summed
