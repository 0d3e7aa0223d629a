"""The pipeline's metrics as CloudWatch Embedded Metric Format lines (`--metrics emf`), for
ECS's awslogs driver, Lambda or the CloudWatch agent: CloudWatch Logs turns each line into
metric data in the namespace it names, with no PutMetricData call from the process.

The datums are the ones `sinks/cloudwatch.MetricReader` makes for PutMetricData; AWS's
`aws-embedded-metrics` package builds and serializes the documents (one per dimension set and
interval, at most 100 metrics and 100 values of a metric a document: the format's limits).
EMF has no Values/Counts pairs, so a histogram's interval goes out as its bucket bounds, each
repeated as often as observations fell in it: percentiles to the buckets' resolution, as with
PutMetricData. Past `MAX_VALUES` observations an interval the repeats are scaled down in
proportion (the shape stays, SampleCount is then at most `MAX_VALUES`).
"""

from __future__ import annotations

from datetime import datetime
from typing import IO, Any

from aws_embedded_metrics.logger.metrics_context import MetricsContext
from aws_embedded_metrics.serializers.log_serializer import LogSerializer

from ecomwatch.sinks.cloudwatch import NAMESPACE, PublishError

MAX_VALUES = 1_000


def histogram_values(values: list[float], counts: list[float]) -> list[float]:
    """Each bucket bound repeated by its count, at most about `MAX_VALUES` in all."""
    total = sum(counts)
    scale = min(1.0, MAX_VALUES / total) if total else 1.0
    out: list[float] = []
    for value, count in zip(values, counts, strict=True):
        out += [value] * max(1, round(count * scale))
    return out


def contexts(datums: list[dict[str, Any]], namespace: str) -> list[MetricsContext]:
    """The datums grouped into one EMF context per (dimension set, timestamp)."""
    grouped: dict[tuple[tuple[tuple[str, str], ...], datetime], MetricsContext] = {}
    for datum in datums:
        dimensions = tuple((d["Name"], d["Value"]) for d in datum["Dimensions"])
        key = (dimensions, datum["Timestamp"])
        context = grouped.get(key)
        if context is None:
            context = MetricsContext.empty()
            context.namespace = namespace
            context.set_dimensions([dict(dimensions)], use_default=False)
            context.set_timestamp(datum["Timestamp"])
            grouped[key] = context
        name, unit = datum["MetricName"], datum["Unit"]
        if "Values" in datum:
            for value in histogram_values(datum["Values"], datum["Counts"]):
                context.put_metric(name, value, unit)
        else:
            context.put_metric(name, datum["Value"], unit)
    return list(grouped.values())


class EmbeddedMetrics:
    """A sender for `MetricsPublisher`: datums as EMF lines on a text stream (stdout, or a
    file the CloudWatch agent tails)."""

    chunk = 100_000  # no call to fit: the serializer splits documents at the format's limits

    def __init__(self, stream: IO[str], namespace: str = NAMESPACE) -> None:
        self.stream = stream
        self.namespace = namespace
        self.lines = 0

    def send(self, datums: list[dict[str, Any]]) -> None:
        lines = [
            line for c in contexts(datums, self.namespace) for line in LogSerializer.serialize(c)
        ]
        try:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()
        except (OSError, ValueError) as exc:  # a closed pipe or file
            raise PublishError(f"EMF lines could not be written: {exc}") from exc
        self.lines += len(lines)
