"""`ecomwatch aws setup|check|teardown`: the AWS resources a pipeline uses, made, verified and
removed.

`setup` creates what is missing — the lake's S3 bucket, the Kinesis stream (shards from the
expected events a second), the DynamoDB state table (on-demand, TTL on `ttl`), the Glue
database, an SNS topic for the alarms when one is named, and the CloudWatch alarms — each tagged
`created-by=ecomwatch`, and says for each what it did. Run twice, it changes nothing.
`check` says for each whether it exists, then asks IAM whether the current credentials may
make every call the pipeline makes (SimulatePrincipalPolicy) and lists what is denied.
`teardown` deletes only what carries the tag: a resource of the same name made otherwise is
left alone, and said so; the lake's bucket is always kept (it holds the data).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from ecomwatch.sinks.cloudwatch import NAMESPACE

TAG_KEY, TAG_VALUE = "created-by", "ecomwatch"
SHARD_EVENTS_PER_S = 1_000  # a shard takes 1,000 records a second...
SHARD_BYTES_PER_S = 1 << 20  # ...and 1 MiB a second

# Every call the pipeline makes, by the resource it makes them on (the README's IAM policy).
PIPELINE_ACTIONS = {
    "lake": ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
    "stream": ["kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:GetShardIterator",
               "kinesis:GetRecords", "kinesis:PutRecords"],
    "table": ["dynamodb:DescribeTable", "dynamodb:PutItem", "dynamodb:UpdateItem",
              "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan",
              "dynamodb:ConditionCheckItem"],
    "glue": ["glue:GetTable", "glue:CreateTable", "glue:UpdateTable", "glue:GetPartitions",
             "glue:BatchCreatePartition", "glue:BatchDeletePartition", "glue:CreateDatabase"],
    "metrics": ["cloudwatch:PutMetricData"],
}  # fmt: skip


def shards_for(events_per_s: float, event_bytes: int = 400) -> int:
    """Shards for a stream of `events_per_s` events of about `event_bytes` each (one event a
    record), by both of a shard's write limits, with a fifth to spare."""
    by_count = events_per_s / SHARD_EVENTS_PER_S
    by_bytes = events_per_s * event_bytes / SHARD_BYTES_PER_S
    return max(1, math.ceil(max(by_count, by_bytes) * 1.2))


@dataclass
class Plan:
    """What a pipeline needs; a None name is a resource it does not use."""

    pipeline: str = "default"
    lake: str | None = None  # s3://bucket/prefix: the bucket is made if missing, never deleted
    stream: str | None = None
    events_per_s: float = 1_000.0
    table: str | None = None
    glue_database: str | None = None
    sns_topic: str | None = None  # a name (created) or an ARN (used as it is)
    alarms: bool = True
    lag_s: float = 300.0
    rejected_share: float = 0.05
    silence_minutes: int = 10

    @property
    def shards(self) -> int:
        return shards_for(self.events_per_s)

    @property
    def bucket(self) -> str | None:
        if self.lake is None or not self.lake.startswith("s3://"):
            return None
        return self.lake.removeprefix("s3://").split("/", 1)[0]


@dataclass
class Step:
    kind: str
    name: str
    result: str  # created, exists, updated, deleted, absent, left alone, missing, present...
    detail: str = ""


@dataclass
class CheckResult:
    resources: list[Step]
    denied: list[str] = field(default_factory=list)
    permissions_note: str = ""  # why the permissions could not be verified, if so


def _tags(kind: str) -> Any:
    """The tag in each service's own shape."""
    if kind in ("kinesis", "glue"):
        return {TAG_KEY: TAG_VALUE}
    return [{"Key": TAG_KEY, "Value": TAG_VALUE}]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class AwsResources:
    def __init__(self, client: Callable[[str], Any]) -> None:
        """`client(service)`: a boto3 client for a service (one per service, kept)."""
        self._make = client
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._make(service)
        return self._clients[service]

    # setup -----------------------------------------------------------------------------------

    def setup(self, plan: Plan) -> list[Step]:
        steps = []
        if plan.bucket:
            steps.append(self._setup_bucket(plan.bucket))
        if plan.stream:
            steps.append(self._setup_stream(plan.stream, plan.shards))
        if plan.table:
            steps.append(self._setup_table(plan.table))
        if plan.glue_database:
            steps.append(self._setup_database(plan.glue_database))
        topic = None
        if plan.sns_topic:
            topic, step = self._setup_topic(plan.sns_topic)
            steps.append(step)
        if plan.alarms:
            steps += [self._put_alarm(alarm, topic) for alarm in alarms(plan)]
        return steps

    def _setup_bucket(self, bucket: str) -> Step:
        s3 = self.client("s3")
        if self._has_bucket(bucket):
            return Step("s3 bucket", bucket, "exists")
        region = s3.meta.region_name
        where = {} if region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": region}
        }  # fmt: skip
        s3.create_bucket(Bucket=bucket, **where)
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": _tags("s3")})
        return Step("s3 bucket", bucket, "created", "for the lake; teardown keeps it")

    def _has_bucket(self, bucket: str) -> bool:
        try:
            self.client("s3").head_bucket(Bucket=bucket)
            return True
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise

    def _setup_stream(self, name: str, shards: int) -> Step:
        kinesis = self.client("kinesis")
        try:
            summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
            return Step("kinesis stream", name, "exists", f"{summary['OpenShardCount']} shards")
        except kinesis.exceptions.ResourceNotFoundException:
            pass
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        # Tagged once made (CreateStream's own Tags is newer than some servers).
        kinesis.add_tags_to_stream(StreamName=name, Tags=_tags("kinesis"))
        return Step("kinesis stream", name, "created", f"{shards} shards")

    def _setup_table(self, name: str) -> Step:
        from ecomwatch.sinks.dynamodb_items import StoreError, create_state_table

        dynamodb = self.client("dynamodb")
        try:
            dynamodb.describe_table(TableName=name)
            return Step("dynamodb table", name, "exists")
        except dynamodb.exceptions.ResourceNotFoundException:
            pass
        try:  # as the store makes it (keys, on-demand, TTL, tag)
            ttl = create_state_table(dynamodb, name)
        except StoreError as exc:
            return Step("dynamodb table", name, "failed", str(exc))
        detail = "on-demand, TTL on ttl" if ttl else "on-demand (this server has no TTL)"
        return Step("dynamodb table", name, "created", detail)

    def _setup_database(self, name: str) -> Step:
        glue = self.client("glue")
        try:
            glue.create_database(DatabaseInput={"Name": name}, Tags=_tags("glue"))
            return Step("glue database", name, "created")
        except glue.exceptions.AlreadyExistsException:
            return Step("glue database", name, "exists")

    def _setup_topic(self, topic: str) -> tuple[str, Step]:
        if topic.startswith("arn:"):
            return topic, Step("sns topic", topic, "given")
        sns = self.client("sns")
        known = self._topic_arn(topic)
        if known:
            return known, Step("sns topic", topic, "exists")
        arn = sns.create_topic(Name=topic, Tags=_tags("sns"))["TopicArn"]
        return arn, Step("sns topic", topic, "created", arn)

    def _topic_arn(self, name: str) -> str | None:
        for page in self.client("sns").get_paginator("list_topics").paginate():
            for topic in page["Topics"]:
                if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                    return str(topic["TopicArn"])
        return None

    def _put_alarm(self, alarm: dict[str, Any], topic: str | None) -> Step:
        cloudwatch = self.client("cloudwatch")
        name = alarm["AlarmName"]
        known = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        actions = {"AlarmActions": [topic], "OKActions": [topic]} if topic else {}
        cloudwatch.put_metric_alarm(**alarm, **actions, Tags=_tags("cloudwatch"))
        return Step("cloudwatch alarm", name, "updated" if known else "created",
                    alarm["AlarmDescription"])  # fmt: skip

    # check -----------------------------------------------------------------------------------

    def check(self, plan: Plan) -> CheckResult:
        found = []
        for kind, name, exists in self._probes(plan):
            try:
                found.append(Step(kind, name, "present" if exists() else "missing"))
            except (ClientError, BotoCoreError) as exc:
                found.append(Step(kind, name, "unknown", str(exc)))
        result = CheckResult(found)
        self._check_permissions(plan, result)
        return result

    def _probes(self, plan: Plan) -> list[tuple[str, str, Callable[[], bool]]]:
        probes: list[tuple[str, str, Callable[[], bool]]] = []
        if plan.bucket:
            bucket = plan.bucket
            probes.append(("s3 bucket", bucket, functools.partial(self._has_bucket, bucket)))
        if plan.stream:
            probes.append(("kinesis stream", plan.stream, lambda: self._stream_arn(plan) != ""))
        if plan.table:
            probes.append(("dynamodb table", plan.table, lambda: self._table_arn(plan) != ""))
        if plan.glue_database:
            probes.append(("glue database", plan.glue_database, lambda: self._database(plan)))
        if plan.sns_topic and not plan.sns_topic.startswith("arn:"):
            topic = plan.sns_topic
            probes.append(("sns topic", topic, lambda: self._topic_arn(topic) is not None))
        if plan.alarms:
            for alarm in alarms(plan):
                name = str(alarm["AlarmName"])
                probes.append(("cloudwatch alarm", name, functools.partial(self._has_alarm, name)))
        return probes

    def _stream_arn(self, plan: Plan) -> str:
        kinesis = self.client("kinesis")
        try:
            summary = kinesis.describe_stream_summary(StreamName=plan.stream)
            return str(summary["StreamDescriptionSummary"]["StreamARN"])
        except kinesis.exceptions.ResourceNotFoundException:
            return ""

    def _table_arn(self, plan: Plan) -> str:
        dynamodb = self.client("dynamodb")
        try:
            return str(dynamodb.describe_table(TableName=plan.table)["Table"]["TableArn"])
        except dynamodb.exceptions.ResourceNotFoundException:
            return ""

    def _database(self, plan: Plan) -> bool:
        glue = self.client("glue")
        try:
            glue.get_database(Name=plan.glue_database)
            return True
        except glue.exceptions.EntityNotFoundException:
            return False

    def _has_alarm(self, name: str) -> bool:
        return self._alarm_arn(name) != ""

    def _alarm_arn(self, name: str) -> str:
        found = self.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
        return str(found[0]["AlarmArn"]) if found else ""

    def _check_permissions(self, plan: Plan, result: CheckResult) -> None:
        actions = [a for key, used in _uses(plan).items() if used for a in PIPELINE_ACTIONS[key]]
        try:
            caller = self.client("sts").get_caller_identity()["Arn"]
            iam = self.client("iam")
            denied = []
            for start in range(0, len(actions), 20):
                answer = iam.simulate_principal_policy(
                    PolicySourceArn=_principal(caller), ActionNames=actions[start : start + 20]
                )
                denied += [
                    r["EvalActionName"] for r in answer["EvaluationResults"]
                    if r["EvalDecision"] != "allowed"
                ]  # fmt: skip
            result.denied = denied
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            why = str(exc).splitlines()[0][:160]
            result.permissions_note = (
                f"permissions not verified: IAM SimulatePrincipalPolicy failed ({why})"
            )

    # teardown --------------------------------------------------------------------------------

    def teardown(self, plan: Plan) -> list[Step]:
        steps = []
        if plan.alarms:
            for alarm in alarms(plan):
                steps.append(self._teardown_alarm(alarm["AlarmName"]))
        if plan.sns_topic and not plan.sns_topic.startswith("arn:"):
            steps.append(self._teardown_topic(plan.sns_topic))
        if plan.glue_database:
            steps.append(self._teardown_database(plan.glue_database))
        if plan.table:
            steps.append(self._teardown_table(plan))
        if plan.stream:
            steps.append(self._teardown_stream(plan))
        if plan.bucket:
            steps.append(Step("s3 bucket", plan.bucket, "kept", "it holds the lake"))
        return steps

    def _teardown_alarm(self, name: str) -> Step:
        cloudwatch = self.client("cloudwatch")
        arn = self._alarm_arn(name)
        if not arn:
            return Step("cloudwatch alarm", name, "absent")
        tags = cloudwatch.list_tags_for_resource(ResourceARN=arn)["Tags"]
        if not _ours(tags):
            return Step("cloudwatch alarm", name, "left alone", "not made by ecomwatch")
        cloudwatch.delete_alarms(AlarmNames=[name])
        return Step("cloudwatch alarm", name, "deleted")

    def _teardown_topic(self, name: str) -> Step:
        sns = self.client("sns")
        arn = self._topic_arn(name)
        if arn is None:
            return Step("sns topic", name, "absent")
        if not _ours(sns.list_tags_for_resource(ResourceArn=arn)["Tags"]):
            return Step("sns topic", name, "left alone", "not made by ecomwatch")
        sns.delete_topic(TopicArn=arn)
        return Step("sns topic", name, "deleted")

    def _teardown_database(self, name: str) -> Step:
        glue = self.client("glue")
        try:
            glue.get_database(Name=name)
        except glue.exceptions.EntityNotFoundException:
            return Step("glue database", name, "absent")
        account = self.client("sts").get_caller_identity()["Account"]
        region = glue.meta.region_name
        arn = f"arn:aws:glue:{region}:{account}:database/{name}"
        if not _ours(glue.get_tags(ResourceArn=arn).get("Tags", {})):
            return Step("glue database", name, "left alone", "not made by ecomwatch")
        glue.delete_database(Name=name)  # with its tables (the lake's files stay)
        return Step("glue database", name, "deleted", "the lake's files are kept")

    def _teardown_table(self, plan: Plan) -> Step:
        dynamodb, name = self.client("dynamodb"), str(plan.table)
        arn = self._table_arn(plan)
        if not arn:
            return Step("dynamodb table", name, "absent")
        if not _ours(dynamodb.list_tags_of_resource(ResourceArn=arn).get("Tags", [])):
            return Step("dynamodb table", name, "left alone", "not made by ecomwatch")
        dynamodb.delete_table(TableName=name)
        return Step("dynamodb table", name, "deleted")

    def _teardown_stream(self, plan: Plan) -> Step:
        kinesis, name = self.client("kinesis"), str(plan.stream)
        if not self._stream_arn(plan):
            return Step("kinesis stream", name, "absent")
        if not _ours(kinesis.list_tags_for_stream(StreamName=name)["Tags"]):
            return Step("kinesis stream", name, "left alone", "not made by ecomwatch")
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
        return Step("kinesis stream", name, "deleted")


def _ours(tags: Any) -> bool:
    """Whether a resource carries the tag, in any service's shape of tags."""
    if isinstance(tags, dict):
        return tags.get(TAG_KEY) == TAG_VALUE
    return any(t.get("Key") == TAG_KEY and t.get("Value") == TAG_VALUE for t in tags)


def _uses(plan: Plan) -> dict[str, bool]:
    return {"lake": bool(plan.bucket), "stream": bool(plan.stream), "table": bool(plan.table),
            "glue": bool(plan.glue_database), "metrics": plan.alarms}  # fmt: skip


def _principal(caller_arn: str) -> str:
    """The IAM ARN to simulate for the caller: an assumed role's session is its role."""
    if ":assumed-role/" in caller_arn:
        account = caller_arn.split(":")[4]
        role = caller_arn.split(":assumed-role/")[1].split("/")[0]
        return f"arn:aws:iam::{account}:role/{role}"
    return caller_arn


def _metric_id(name: str, **dimensions: str) -> dict[str, Any]:
    return {
        "Namespace": NAMESPACE,
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
    }


def _metric(name: str, stat: str, **dimensions: str) -> dict[str, Any]:
    return {**_metric_id(name, **dimensions), "Statistic": stat, "Period": 60}


def alarms(plan: Plan) -> list[dict[str, Any]]:
    """The pipeline's alarms (PutMetricAlarm's arguments), over the metrics `serve --metrics
    cloudwatch` publishes."""
    p = plan.pipeline
    prefix = f"ecomwatch-{p}"
    found = [
        {
            "AlarmName": f"{prefix}-{severity}-alerts",
            "AlarmDescription": f"a {severity} alert was raised",
            **_metric("Alerts", "Sum", pipeline=p, severity=severity),
            "EvaluationPeriods": 1, "Threshold": 0.0,
            "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
        }
        for severity in ("high", "critical")
    ]  # fmt: skip
    found.append({
        "AlarmName": f"{prefix}-ingest-lag",
        "AlarmDescription": f"the watermark is over {plan.lag_s:g} s behind for 3 minutes",
        **_metric("WatermarkLagSeconds", "Maximum", pipeline=p),
        "EvaluationPeriods": 3, "Threshold": plan.lag_s,
        "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "breaching",
    })  # fmt: skip
    found.append({
        "AlarmName": f"{prefix}-rejected-share",
        "AlarmDescription": f"over {plan.rejected_share:.0%} of rows rejected for 5 minutes",
        "Metrics": [
            {"Id": "rejected", "ReturnData": False, "MetricStat": {
                "Metric": _metric_id("EventsRejected", pipeline=p), "Period": 300, "Stat": "Sum"}},
            {"Id": "accepted", "ReturnData": False, "MetricStat": {
                "Metric": _metric_id("EventsAccepted", pipeline=p), "Period": 300, "Stat": "Sum"}},
            {"Id": "share", "ReturnData": True, "Label": "rejected share",
             "Expression": "FILL(rejected, 0) / (FILL(rejected, 0) + FILL(accepted, 0) + 1)"},
        ],
        "EvaluationPeriods": 1, "Threshold": plan.rejected_share,
        "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching",
    })  # fmt: skip
    found.append({
        "AlarmName": f"{prefix}-silence",
        "AlarmDescription": f"no events accepted for {plan.silence_minutes} minutes",
        **_metric("EventsAccepted", "Sum", pipeline=p),
        "EvaluationPeriods": plan.silence_minutes, "Threshold": 1.0,
        "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "breaching",
    })  # fmt: skip
    return found


def pipeline_figures(cloudwatch: Any, pipeline: str, hours: float = 1.0) -> list[dict[str, Any]]:
    """What the pipeline published over the last `hours`, by metric and dimensions: the sum
    (counters, histograms' sample counts) and the maximum, read back with GetMetricData."""
    from datetime import UTC, datetime, timedelta

    unique: dict[str, dict[str, Any]] = {}  # (some servers list a metric once per datum)
    for page in cloudwatch.get_paginator("list_metrics").paginate(
        Namespace=NAMESPACE, Dimensions=[{"Name": "pipeline", "Value": pipeline}]
    ):
        for m in page["Metrics"]:
            dims = sorted((d["Name"], d["Value"]) for d in m["Dimensions"])
            unique[json.dumps([m["MetricName"], dims])] = m
    metrics = list(unique.values())
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(hours=hours)
    period = max(60, int(hours * 3600) // 60 * 60)
    figures = []
    for offset in range(0, len(metrics), 250):  # 500 queries a call, two per metric
        chunk = metrics[offset : offset + 250]
        queries = [
            {"Id": f"{stat.lower()}{n}", "ReturnData": True,
             "MetricStat": {"Metric": m, "Period": period, "Stat": stat}}
            for n, m in enumerate(chunk) for stat in ("Sum", "Maximum")
        ]  # fmt: skip
        answer = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
        values = {r["Id"]: r["Values"] for r in answer["MetricDataResults"]}
        for n, m in enumerate(chunk):
            named = {d["Name"]: d["Value"] for d in m["Dimensions"] if d["Name"] != "pipeline"}
            figures.append({
                "metric": m["MetricName"], "dimensions": named,
                "sum": sum(values.get(f"sum{n}", [])),
                "max": max(values.get(f"maximum{n}", []), default=None),
            })  # fmt: skip
    return sorted(figures, key=lambda f: (f["metric"], sorted(f["dimensions"].items())))
