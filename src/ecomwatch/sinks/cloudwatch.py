"""The pipeline's metrics in Amazon CloudWatch (`[metrics] cloudwatch = true`, or
`serve|run --metrics cloudwatch`): every `interval_s` the Prometheus registry (the one the
service shows at /metrics) is read and published with PutMetricData in namespace `ecomwatch`,
dimension `pipeline` (plus each metric's own labels: rule, severity, reason, shard...), or
written as Embedded Metric Format lines (`sinks/emf.py`, the same datums).

One source of figures for both: a counter goes out as its increase over the interval (Count),
per label set and summed by pipeline alone and by each of its labels (CloudWatch does not sum
across dimensions: an alarm on every high-severity alert needs `Alerts{pipeline, severity}`), a
gauge as its value, a histogram (batch latency, commit time) as the interval's observations
by bucket (Values = each bucket's upper bound, Counts = how many fell in it), from which
CloudWatch computes percentiles to the buckets' resolution. At most 1,000 datums go in one
call (the API's limit). Publishing runs on its own thread, so the pipeline never waits on
CloudWatch; a failed call (after botocore's retries) is counted and its datums are sent with
the next interval's, up to `KEEP_INTERVALS` intervals of them (older ones are dropped and
counted in `dropped`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CollectorRegistry

NAMESPACE = "ecomwatch"
DATUMS_PER_CALL = 1_000
KEEP_INTERVALS = 10
PREFIX = "ecomwatch_"


def _unit(name: str) -> str:
    if name.endswith("_seconds"):
        return "Seconds"
    if "millis" in name:
        return "Milliseconds"
    return "Count"


def _metric_name(family: str) -> str:
    """`ecomwatch_events_accepted` → `EventsAccepted`, CloudWatch's usual style."""
    words = family.removeprefix(PREFIX).split("_")
    return "".join(w.capitalize() for w in words)


class MetricReader:
    """Datums for one interval from a Prometheus registry: counters as increases since the
    previous read, gauges as values, histograms as the interval's bucket counts."""

    def __init__(self, registry: CollectorRegistry, pipeline: str) -> None:
        self.registry = registry
        self.pipeline = pipeline
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def _dimensions(self, labels: dict[str, str]) -> list[dict[str, str]]:
        named = [{"Name": "pipeline", "Value": self.pipeline}]
        return named + [{"Name": k, "Value": v} for k, v in sorted(labels.items()) if k != "le"]

    def _datum(
        self, name: str, labels: dict[str, str], stamp: datetime, unit: str, **value: Any
    ) -> dict[str, Any]:
        """One datum: `value` is Value=…, or Values=… with Counts=…."""
        return {
            "MetricName": name, "Dimensions": self._dimensions(labels),
            "Timestamp": stamp, "Unit": unit, **value,
        }  # fmt: skip

    def _increase(self, sample: str, labels: dict[str, str], value: float) -> float:
        key = (sample, tuple(sorted(labels.items())))
        previous = self._last.get(key, 0.0)
        self._last[key] = value
        return max(value - previous, 0.0)

    def read(self, now: datetime | None = None) -> list[dict[str, Any]]:
        stamp = now or datetime.now(UTC)
        return list(self._datums(stamp))

    def _datums(self, stamp: datetime) -> Iterator[dict[str, Any]]:
        for family in self.registry.collect():
            name = _metric_name(family.name)
            if family.type == "counter":
                yield from self._counter(family, name, stamp)
            elif family.type == "gauge":
                for s in family.samples:
                    unit = _unit(family.name)
                    yield self._datum(name, s.labels, stamp, unit, Value=float(s.value))
            elif family.type == "histogram":
                yield from self._histogram(family, name, stamp)

    def _counter(self, family: Any, name: str, stamp: datetime) -> Iterator[dict[str, Any]]:
        """Each labelled series' increase, and the same summed over the labels CloudWatch cannot
        sum itself: by pipeline alone and, with two labels or more, by each one (so an alarm
        can watch "every high alert", whatever its rule)."""
        sums: dict[tuple[tuple[str, str], ...], float] = {}
        for s in family.samples:
            if not s.name.endswith("_total"):
                continue
            increase = self._increase(s.name, s.labels, s.value)
            yield self._datum(name, s.labels, stamp, "Count", Value=increase)
            if s.labels:
                for key in [(), *((item,) for item in s.labels.items())]:
                    if len(key) < len(s.labels):
                        sums[key] = sums.get(key, 0.0) + increase
        for key, total in sums.items():
            yield self._datum(name, dict(key), stamp, "Count", Value=total)

    def _histogram(self, family: Any, name: str, stamp: datetime) -> Iterator[dict[str, Any]]:
        """The interval's observations per bucket (cumulative buckets made per-bucket)."""
        by_labels: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for s in family.samples:
            if s.name.endswith("_bucket"):
                rest = {k: v for k, v in s.labels.items() if k != "le"}
                increase = self._increase(s.name, s.labels, s.value)
                by_labels.setdefault(tuple(sorted(rest.items())), []).append(
                    (float(s.labels["le"]), increase)
                )
        for labels, buckets in by_labels.items():
            buckets.sort()
            values, counts, below = [], [], 0.0
            finite = [bound for bound, _ in buckets if bound != float("inf")]
            for bound, cumulative in buckets:
                in_bucket = cumulative - below
                below = cumulative
                if in_bucket > 0:
                    values.append(bound if bound != float("inf") else (finite[-1] if finite else 0))
                    counts.append(in_bucket)
            if values:
                yield self._datum(
                    name, dict(labels), stamp, _unit(family.name), Values=values, Counts=counts
                )


class Sender(Protocol):
    """Where a publisher's datums go: up to `chunk` of them a `send`, which raises
    `PublishError` when they did not go."""

    chunk: int

    def send(self, datums: list[dict[str, Any]]) -> None: ...


class PublishError(Exception):
    pass


class PutMetricData:
    """Datums to CloudWatch's PutMetricData (botocore retries each call first)."""

    chunk = DATUMS_PER_CALL

    def __init__(self, client: Any, namespace: str = NAMESPACE) -> None:
        self.client = client
        self.namespace = namespace

    def send(self, datums: list[dict[str, Any]]) -> None:
        try:
            self.client.put_metric_data(Namespace=self.namespace, MetricData=datums)
        except (ClientError, BotoCoreError) as exc:
            raise PublishError(str(exc)) from exc


class MetricsPublisher:
    """Publishes a registry's figures every `interval_s` from a background thread."""

    def __init__(
        self,
        sender: Sender,
        registry: CollectorRegistry,
        *,
        pipeline: str,
        interval_s: float = 60.0,
    ) -> None:
        self.sender = sender
        self.reader = MetricReader(registry, pipeline)
        self.interval_s = interval_s
        self.published = 0  # datums sent
        self.failed_calls = 0
        self.dropped = 0  # datums given up after KEEP_INTERVALS failed intervals
        self.error: str | None = None
        self._backlog: list[list[dict[str, Any]]] = []  # intervals not yet published
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)

    @property
    def unsent(self) -> int:
        """Datums not published: the backlog, and what was dropped from it."""
        return sum(len(interval) for interval in self._backlog) + self.dropped

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.publish()

    def publish(self) -> None:
        """Read this interval's figures and send them with any backlog."""
        self._backlog.append(self.reader.read())
        if len(self._backlog) > KEEP_INTERVALS:
            self.dropped += len(self._backlog.pop(0))
        pending = [d for interval in self._backlog for d in interval]
        sent = 0
        try:
            for start in range(0, len(pending), self.sender.chunk):
                chunk = pending[start : start + self.sender.chunk]
                self.sender.send(chunk)
                sent += len(chunk)
        except PublishError as exc:
            self.failed_calls += 1
            self.error = str(exc)
            rest = pending[sent:]
            self._backlog = [rest] if rest else []
            self.published += sent
            return
        self.published += sent
        self._backlog = []
        self.error = None

    def close(self) -> None:
        """Stop the thread and publish the last (partial) interval."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.publish()
