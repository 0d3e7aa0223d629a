"""The live service: collector queue → engine (lake writer, live aggregates, detector) in a
background thread, with commits on a clock, and a clean drain on stop."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ecomwatch.config import Config
from ecomwatch.decode.validate import Decoded
from ecomwatch.detect.alert import parse_iso
from ecomwatch.detect.rules import Rule, Severity, is_flagging
from ecomwatch.engine.pipeline import Pipeline, RunSummary
from ecomwatch.engine.watermark import Watermark
from ecomwatch.ingest import default_dead_letter
from ecomwatch.lake.open import LakeFormat, open_lake
from ecomwatch.operators.lake_writer import LakeWriter
from ecomwatch.operators.live_aggregates import TrafficAggregates
from ecomwatch.operators.web_sessions import WebSessions
from ecomwatch.pipeline_metrics import PipelineMetrics
from ecomwatch.serve.collector import BodyError, Limits, Numbering, decode_body
from ecomwatch.serve.detector_process import DetectorProcess
from ecomwatch.serve.incident_view import IncidentView
from ecomwatch.serve.live_summary import LiveSummary
from ecomwatch.serve.live_web import LiveWeb
from ecomwatch.serve.queue_source import QueueSource
from ecomwatch.sinks.jsonl import JsonLinesFile, read_json_lines

if TYPE_CHECKING:
    from ecomwatch.sources.kinesis import KinesisSource

MAX_ALERTS_KEPT = 10_000


def _us(text: str) -> int:
    return int(parse_iso(text).timestamp() * 1_000_000)


def _entities(alert: dict[str, Any]) -> list[tuple[str, str]]:
    """What an alert is about: its entity, and each IP it names."""
    keys = [(alert["entity_type"], alert["entity"])]
    keys += [("ip", ip) for ip in alert.get("ips") or [] if ("ip", ip) not in keys]
    return keys


class BatchStats:
    """The last operator: counts batches and their latency, and publishes a copy of the live
    aggregates for the API's threads (the pipeline thread goes on changing its own)."""

    name = "service_stats"

    def __init__(
        self,
        source: QueueSource,
        traffic: TrafficAggregates,
        metrics: PipelineMetrics,
        stream: KinesisSource | None = None,
        writer: LakeWriter | None = None,
    ) -> None:
        self.writer = writer
        self.source = source
        self.stream = stream
        self.traffic = traffic
        self.metrics = metrics
        self.processed_events = 0
        self.minutes: list[dict[str, Any]] = []

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        if events.num_rows:
            self.processed_events += events.num_rows
            self.metrics.batches.inc()
            if self.stream is not None:  # no collector: what the stream's decoder accepted
                self.metrics.accepted.inc(events.num_rows)
            while self.source.latencies:
                self.metrics.batch_latency.observe(self.source.latencies.popleft())
        if self.writer is not None and self.metrics.observe_commits(self.writer.commit_seconds):
            self.minutes = self.traffic.minutes()  # what the commits made durable
        if self.stream is not None:
            self.metrics.observe_lag(self.stream)

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None


class Service:
    def __init__(
        self,
        lake: str | Path,
        *,
        config: Config,
        rules: list[Rule],
        alerts: Path | None = None,
        limits: Limits | None = None,
        commit_seconds: float = 5.0,
        batch_seconds: float = 0.15,
        batch_rows: int = 20_000,
        max_queue_events: int = 200_000,
        max_queue_seconds: float = 1.0,
        stream: KinesisSource | None = None,
        on_commit_days: Callable[[set[str]], None] | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.metrics = PipelineMetrics()
        self.table = open_lake(lake, writer=True, new_format=LakeFormat(config.lake.format))
        aux = self.table.local_aux_dir()
        self.alerts_path = alerts or (aux / "alerts.jsonl" if aux else Path("alerts.jsonl"))
        self.dead_letter = JsonLinesFile(default_dead_letter(self.table))
        # alert id → its latest version, oldest first; (entity type, entity) → alert ids
        self._latest: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._about: dict[tuple[str, str], set[str]] = {}
        # A new id per start: with collector-wide row numbers it keys rows without event_id.
        self.source = QueueSource(
            source_id=f"http-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}",
            max_events=max_queue_events,
            max_wait_s=max_queue_seconds,
            batch_rows=batch_rows,
            batch_seconds=batch_seconds,
        )
        # A stream as the source (`serve --source kinesis://…`): the collector is off.
        self.stream = stream
        self.numbering = Numbering()
        self.accepted_events = 0
        self.writer = LakeWriter(self.table, on_days=on_commit_days)
        self.traffic = TrafficAggregates()
        self.flagged: frozenset[str] = frozenset()  # IPs alerted at medium or above
        self._lock = threading.Lock()
        self._load_alerts()  # before the detector process appends to the file
        self.incidents = IncidentView(self.alerts_path)
        self.detector = DetectorProcess(
            rules,
            alerts_path=self.alerts_path,
            listeners=[self._on_alerts],
            incident_listeners=[self.incidents.update],
            incidents=config.incidents,
            judge_share=config.detect.live_judge_share,
            ipv6_prefix_bits=config.detect.ipv6_prefix,
            behind=stream.behind if stream is not None else self.source.behind,
        )
        self.live = LiveSummary(lambda: self.flagged)
        self.live_web = LiveWeb()
        self.live_panels = (self.live, self.live_web)
        self.stats = BatchStats(self.source, self.traffic, self.metrics, stream, self.writer)
        self.watermark = Watermark(
            lateness_s=config.engine.lateness_s, idle_timeout_s=config.engine.idle_timeout_s
        )
        self.pipeline = Pipeline(
            committer=self.writer,
            operators=[self.writer, self.traffic, self.detector, *self.live_panels, self.stats],
            watermark=self.watermark,
            dead_letter=self.dead_letter,
            checkpoint_rows=config.engine.checkpoint_rows,
            checkpoint_seconds=commit_seconds,
            transforms=[WebSessions(gap_s=config.weblog.session_gap_s)],
        )
        self.metrics.watch(
            queue_depth=lambda: self.source.depth,
            watermark_lag=self._watermark_lag,
            lake_commits=lambda: self.writer.durable_commits,
            checkpoint_age=lambda: time.time() - self.writer.last_commit_at,
        )
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    # lifecycle ---------------------------------------------------------------------------

    def send_alerts_to(self, listener: Callable[[list[dict[str, Any]]], None]) -> None:
        """Also hand each batch of new alerts to `listener` (a store, a webhook); before start."""
        self.detector.listeners.append(listener)

    def send_incidents_to(self, listener: Callable[[list[dict[str, Any]]], None]) -> None:
        """Also hand each batch of changed incident records to `listener`; before start."""
        self.detector.incident_listeners.append(listener)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 120.0) -> RunSummary | None:
        """Refuse new events, drain the queue (or end the stream's reading), commit the lake
        and the state, close."""
        if self.stream is not None:
            self.stream.stop()
        self.source.close()
        self._thread.join(timeout_s)
        self.detector.close()
        self.dead_letter.close()
        self.table.close()
        if self.error is not None:
            raise RuntimeError(f"the pipeline failed: {self.error}") from self.error
        return self.summary

    def _run(self) -> None:
        try:
            self.summary = self.pipeline.run([self.stream or self.source])
            self.writer.close()
        except BaseException as exc:  # reported by stop() and /readyz
            self.error = exc
            self.source.close()
            return
        failed = self.summary.failed if self.summary else []
        if failed:  # a stream that cannot be read (missing, no permission): /readyz says so
            self.error = RuntimeError(f"{failed[0].name}: {failed[0].error}")

    # collector ---------------------------------------------------------------------------

    def submit(self, body: bytes, encoding: str | None, request_id: str) -> Decoded | None:
        """Decode and queue a request; None when the queue is full (nothing queued).
        BodyError when the body as a whole cannot be read."""
        if self.stream is not None:
            raise BodyError(
                f"this service reads {self.stream.name}; its collector is off: send events "
                "to the stream",
                status=409,
            )
        decoded = decode_body(
            body,
            encoding=encoding,
            limits=self.limits,
            numbering=self.numbering,
            source_id=self.source.source_id,
            request_id=request_id,
        )
        if not self.source.offer(decoded):
            return None
        with self._lock:  # requests are decoded on several threads
            self.accepted_events += decoded.events.num_rows
        self.metrics.accepted.inc(decoded.events.num_rows)
        for reason in decoded.rejects["reason"].to_pylist():
            self.metrics.rejected.labels(reason=reason).inc()
        return decoded

    # views -------------------------------------------------------------------------------

    def _on_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """New alerts from the detector. The detector runs beside the pipeline, so the events
        of an IP it flags have usually gone through the live figures already: an IP alert's
        evidence events count as flagged traffic when it first flags its IP."""
        newly_flagged = self._index(alerts)
        for alert in alerts:
            if alert["entity_type"] == "ip" and alert["entity"] in newly_flagged:
                newly_flagged.discard(alert["entity"])
                self.live.count_flagged_earlier(
                    int(alert["evidence"].get("events") or 0),
                    _us(alert["first_seen"]),
                    _us(alert["last_seen"]),
                )

    def _index(self, alerts: list[dict[str, Any]]) -> set[str]:
        """Keep alerts for the API and metrics; return the IPs they flag for the first time."""
        for alert in alerts:
            self.metrics.alerts.labels(rule=alert["rule"], severity=alert["severity"]).inc()
        with self._lock:
            for alert in alerts:
                self._keep(alert)
        serious = [a for a in alerts if is_flagging(a["severity"])]
        named = {ip for a in serious for ip in a.get("ips") or []} - self.flagged
        if named:
            self.flagged = self.flagged | named
        return named

    def _load_alerts(self) -> None:
        """Alerts of earlier runs on this lake, for the API (the detector appends new ones)."""
        if self.alerts_path.exists():
            self._index(read_json_lines(self.alerts_path))

    def _watermark_lag(self) -> float:
        current = self.watermark.current()
        return 0.0 if current is None else max(0.0, time.time() - current / 1e6)

    def _keep(self, alert: dict[str, Any]) -> None:
        """Index an alert (an escalation replaces its earlier version); forget the oldest."""
        alert_id = alert["alert_id"]
        self._latest.pop(alert_id, None)
        self._latest[alert_id] = alert
        for key in _entities(alert):
            self._about.setdefault(key, set()).add(alert_id)
        while len(self._latest) > MAX_ALERTS_KEPT:
            _, old = self._latest.popitem(last=False)
            for key in _entities(old):
                ids = self._about.get(key)
                if ids is not None:
                    ids.discard(old["alert_id"])
                    if not ids:
                        del self._about[key]

    def alerts(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest alerts, newest first (an escalation shows its latest version)."""
        with self._lock:
            newest = list(itertools.islice(reversed(self._latest.values()), limit))
        return newest

    def alert_count(self) -> dict[str, int]:
        with self._lock:
            alerts = list(self._latest.values())
        counts: dict[str, int] = {}
        for alert in alerts:
            counts[alert["severity"]] = counts.get(alert["severity"], 0) + 1
        return counts

    def entity(self, kind: str, entity: str) -> dict[str, Any]:
        with self._lock:
            ids = self._about.get((kind, entity), set())
            about = [a for i, a in self._latest.items() if i in ids]
        return {"entity_type": kind, "entity": entity, "alerts": about[::-1]}

    def incident(self, incident_id: str, alert_limit: int = 500) -> dict[str, Any] | None:
        """An incident (following merges) with its alerts still held, the worst first."""
        record = self.incidents.get(incident_id)
        if record is None:
            return None
        with self._lock:
            alerts = list(self._latest.values())
        final = record["incident_id"]
        members = [
            a
            for a in alerts
            if a.get("incident_id") and self.incidents.resolve_id(a["incident_id"]) == final
        ]
        members.sort(key=lambda a: (-Severity(a["severity"]).rank, -a["count"], a["alert_id"]))
        return {**record, "alerts_held": len(members), "alert_lines": members[:alert_limit]}

    def incidents_naming(self, text: str) -> set[str]:
        """The incidents of the alerts held about an entity or IP written exactly `text`."""
        with self._lock:
            ids = set().union(*(ids for (_, e), ids in self._about.items() if e == text))
            named = {self._latest[i].get("incident_id") for i in ids if i in self._latest}
        return {self.incidents.resolve_id(i) for i in named if i}

    def traffic_minutes(self) -> list[dict[str, Any]]:
        return self.stats.minutes
