"""Prometheus metrics of the live service, all named `ecomwatch_…`."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
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
            "From a request's acceptance to the end of its batch's processing",
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
