"""`ecomwatch aws setup|check|teardown` on moto's server: setup makes every resource (tagged)
and, run again, changes nothing; check finds them all (IAM simulation is not in moto: it says
the permissions were not verified); teardown deletes what setup made and leaves alone a
resource of the same kind it did not make."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest

from tests.kinesis_servers import CREDENTIALS

pytestmark = pytest.mark.integration

RESOURCES = ["--pipeline", "shop", "--lake", "s3://shop-lake/events", "--stream", "shop-clicks",
             "--table", "shop-state", "--glue-database", "shop_lake",
             "--sns-topic", "shop-alarms"]  # fmt: skip


def test_setup_check_teardown(moto_kinesis: str):
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": moto_kinesis}

    def aws(*args: str, ok: bool = True) -> tuple[int, object]:
        ran = subprocess.run(
            [sys.executable, "-m", "ecomwatch.cli.main", "aws", *args, "--json"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert (ran.returncode == 0) is ok, ran.stderr
        return ran.returncode, json.loads(ran.stdout)

    def client(service: str):  # type: ignore[no-untyped-def]
        return boto3.client(
            service, endpoint_url=moto_kinesis, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip

    # A table of the same kind that ecomwatch did not make: teardown must leave it.
    client("dynamodb").create_table(
        TableName="shop-other", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
    )  # fmt: skip
    _, missing = aws("check", *RESOURCES, ok=False)
    assert {r["result"] for r in missing["resources"]} == {"missing"}  # type: ignore[index]

    _, made = aws("setup", *RESOURCES, "--events-per-second", "3000")
    results = {(s["kind"], s["result"]) for s in made}  # type: ignore[union-attr]
    assert {k for k, r in results if r == "created"} == {
        "s3 bucket", "kinesis stream", "dynamodb table", "glue database", "sns topic",
        "cloudwatch alarm",
    }  # fmt: skip
    shards = client("kinesis").describe_stream_summary(StreamName="shop-clicks")
    assert shards["StreamDescriptionSummary"]["OpenShardCount"] == 4  # 3,000/s, a fifth spare
    alarms = client("cloudwatch").describe_alarms(AlarmNamePrefix="ecomwatch-shop-")
    by_name = {a["AlarmName"]: a for a in alarms["MetricAlarms"]}
    assert set(by_name) == {f"ecomwatch-shop-{n}" for n in
                            ("high-alerts", "critical-alerts", "ingest-lag", "rejected-share",
                             "silence")}  # fmt: skip
    topic = next(s["detail"] for s in made if s["kind"] == "sns topic")  # type: ignore[union-attr]
    high = by_name["ecomwatch-shop-high-alerts"]
    assert high["AlarmActions"] == [topic] and high["MetricName"] == "Alerts"
    assert {d["Name"]: d["Value"] for d in high["Dimensions"]} == {
        "pipeline": "shop", "severity": "high",
    }  # fmt: skip
    assert by_name["ecomwatch-shop-silence"]["TreatMissingData"] == "breaching"

    _, again = aws("setup", *RESOURCES)
    assert {s["result"] for s in again} <= {"exists", "updated"}  # type: ignore[union-attr]

    _, present = aws("check", *RESOURCES)
    assert {r["result"] for r in present["resources"]} == {"present"}  # type: ignore[index]
    assert "not verified" in present["permissions_note"]  # type: ignore[index]

    _, gone = aws("teardown", *RESOURCES)
    kept = {s["kind"]: s["result"] for s in gone}  # type: ignore[union-attr]
    assert kept.pop("s3 bucket") == "kept" and set(kept.values()) == {"deleted"}
    assert client("s3").head_bucket(Bucket="shop-lake")  # the lake's data is never deleted
    _, left = aws("teardown", "--pipeline", "shop", "--table", "shop-other", "--no-alarms")
    assert left[0]["result"] == "left alone"  # type: ignore[index]
    assert client("dynamodb").describe_table(TableName="shop-other")["Table"]
    _, after = aws("check", *RESOURCES, ok=False)
    found = {r["kind"]: r["result"] for r in after["resources"]}  # type: ignore[index]
    assert found.pop("s3 bucket") == "present" and set(found.values()) == {"missing"}
