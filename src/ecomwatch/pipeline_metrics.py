"""The pipeline's figures as Prometheus metrics, all named `ecomwatch_…`: the live service's
/metrics, and what `serve` and `run` publish to CloudWatch (`--metrics cloudwatch|emf`).

The service feeds them from its collector and its last operator; a `run` through `RunMeter`,
which the engine tells of every batch (`Pipeline(on_batch=…)`, as rejected rows never reach an
operator) and the detector of every alert.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ecomwatch.decode.validate import Decoded


class _Stream(Protocol):
    name: str

    def lag_ms(self) -> dict[str, int]: ...


class PipelineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.accepted = Counter(
            "ecomwatch_events_accepted",
            "Events accepted by the collector (or read from the stream)",
            registry=r,
        )
        self.rejected = Counter(
            "ecomwatch_events_rejected", "Rows rejected by the collector", ["reason"], registry=r
        )
        self.requests = Counter(
            "ecomwatch_collector_requests", "Collector requests by status", ["status"], registry=r
        )
        self.batches = Counter("ecomwatch_batches", "Micro-batches processed", registry=r)
        self.batch_latency = Histogram(
            "ecomwatch_batch_latency_seconds",
            "From a request's acceptance to the end of its batch's processing (`run`: from "
            "the end of the previous batch: read, decode and process)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.alerts = Counter("ecomwatch_alerts", "Alerts raised", ["rule", "severity"], registry=r)
        self.queue_depth = Gauge(
            "ecomwatch_queue_depth_events", "Events waiting for the pipeline", registry=r
        )
        self.watermark_lag = Gauge(
            "ecomwatch_watermark_lag_seconds",
            "Wall-clock time minus the event-time watermark",
            registry=r,
        )
        self.shard_lag = Gauge(
            "ecomwatch_kinesis_millis_behind_latest",
            "A Kinesis shard's MillisBehindLatest as last read (serve --source kinesis://…)",
            ["stream", "shard"],
            registry=r,
        )
        self.lake_commits = Gauge(
            "ecomwatch_lake_commits", "Lake commits written by this process", registry=r
        )
        self.commit_duration = Histogram(
            "ecomwatch_lake_commit_seconds",
            "Time to write one lake commit (files and timeline)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.checkpoint_age = Gauge(
            "ecomwatch_checkpoint_age_seconds",
            "Wall-clock time since the last durable commit (or the start)",
            registry=r,
        )

    def observe_commits(self, commit_seconds: deque[float]) -> int:
        """The lake commits' times a writer queued since the last call; how many there were."""
        drained = 0
        while commit_seconds:
            self.commit_duration.observe(commit_seconds.popleft())
            drained += 1
        return drained

    def observe_lag(self, stream: _Stream) -> None:
        """A stream's lag per shard, as last read."""
        for shard, lag in stream.lag_ms().items():
            self.shard_lag.labels(stream=stream.name, shard=shard).set(lag)

    def watch(
        self,
        *,
        queue_depth: Callable[[], float],
        watermark_lag: Callable[[], float],
        lake_commits: Callable[[], float],
        checkpoint_age: Callable[[], float],
    ) -> None:
        """Gauges read when scraped."""
        self.checkpoint_age.set_function(checkpoint_age)
        self.queue_depth.set_function(queue_depth)
        self.watermark_lag.set_function(watermark_lag)
        self.lake_commits.set_function(lake_commits)


class RunMeter:
    """Feeds `PipelineMetrics` from a `run` (files or a stream): batches, accepted and
    rejected rows (by reason), each batch's time, the lake's commit times, alerts by rule and
    severity, a stream's lag per shard. The gauges are read when published."""

    def __init__(
        self,
        metrics: PipelineMetrics,
        *,
        commit_seconds: deque[float],
        durable_commits: Callable[[], float],
        last_commit_at: Callable[[], float],
        watermark_us: Callable[[], int | None],
        stream: _Stream | None = None,
    ) -> None:
        self.metrics = metrics
        self.stream = stream
        self._commit_seconds = commit_seconds
        self._watermark_us = watermark_us
        self._last_batch = time.monotonic()
        metrics.watch(
            queue_depth=lambda: 0.0,  # a run reads as it goes: nothing waits in a queue
            watermark_lag=self._watermark_lag,
            lake_commits=durable_commits,
            checkpoint_age=lambda: time.time() - last_commit_at(),
        )

    def _watermark_lag(self) -> float:
        watermark = self._watermark_us()
        return 0.0 if watermark is None else max(time.time() - watermark / 1e6, 0.0)

    def batch(self, decoded: Decoded) -> None:
        """One batch through the pipeline (the engine's `on_batch`)."""
        now = time.monotonic()
        m = self.metrics
        if decoded.read:
            m.batches.inc()
            m.batch_latency.observe(now - self._last_batch)
            m.accepted.inc(decoded.events.num_rows)
            for reason in decoded.rejects["reason"].to_pylist():
                m.rejected.labels(reason=reason).inc()
        self._last_batch = now
        self.commits()
        if self.stream is not None:
            m.observe_lag(self.stream)

    def commits(self) -> None:
        """The lake commits' times so far (after each batch, and once after the run's last
        commit)."""
        self.metrics.observe_commits(self._commit_seconds)

    def alerts(self, alerts: list[dict[str, Any]]) -> None:
        """New alerts (a detector listener; called on the detector's thread)."""
        for alert in alerts:
            self.metrics.alerts.labels(rule=alert["rule"], severity=alert["severity"]).inc()
