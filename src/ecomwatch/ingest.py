"""Wire the embedded pipeline for `ecomwatch run`: files → decoders → engine → lake."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ecomwatch.config import Config
from ecomwatch.decode.url_map import load_url_map
from ecomwatch.decode.web_logs import LogFormat, WebLogOptions
from ecomwatch.detect.detector import Detector
from ecomwatch.detect.incident import incidents_path_for
from ecomwatch.detect.rules import Rule, load_rules
from ecomwatch.engine.background import InBackground
from ecomwatch.engine.operator import Operator
from ecomwatch.engine.pipeline import Pipeline, RunSummary
from ecomwatch.engine.watermark import Clock, Watermark
from ecomwatch.lake.base import EventTable
from ecomwatch.lake.open import LakeFormat, open_lake
from ecomwatch.operators.lake_writer import LakeWriter
from ecomwatch.operators.live_aggregates import TrafficAggregates
from ecomwatch.operators.web_sessions import WebSessions
from ecomwatch.pipeline_metrics import PipelineMetrics, RunMeter
from ecomwatch.sinks.jsonl import JsonLinesFile
from ecomwatch.sources.base import Source, SourceError
from ecomwatch.sources.files import FileSource, file_sources


def default_dead_letter(table: EventTable) -> Path:
    """Rejected rows go inside a local lake (where table readers do not look); for a lake on
    S3, to `ecomwatch-dead-letter.jsonl` in the working directory."""
    aux = table.local_aux_dir()
    return (aux if aux is not None else Path.cwd()) / (
        "dead_letter.jsonl" if aux is not None else "ecomwatch-dead-letter.jsonl"
    )


def file_threads(config: Config) -> int:
    """The detector's query threads on file input (`[detect] file_threads`; 0: half the
    cores). Decoding and writing keep the other cores busy: on two cores, one thread for the
    detector's queries used about 15 % less CPU than two (the parallel aggregations' merging)
    and a 10 M-event run with detection took 26.8 s instead of 28.5 s (six alternated pairs,
    2026-12-06)."""
    return config.detect.file_threads or max(1, (os.cpu_count() or 2) // 2)


def open_inputs(inputs: list[Path], config: Config) -> tuple[list[FileSource], list[SourceError]]:
    """The input files, opened (a URL map that does not load raises UrlMapError)."""
    weblog = config.weblog
    web = WebLogOptions(
        format=LogFormat(weblog.format),
        url_map=load_url_map(weblog.url_map) if weblog.url_map else None,
        session_cookie=weblog.session_cookie,
    )
    return file_sources(
        inputs, chunk_bytes=config.decode.chunk_bytes, threads=config.decode.threads, web=web
    )


def ingest(
    inputs: list[Path],
    lake: Path | str,
    *,
    config: Config,
    dead_letter: Path | None = None,
    clock: Clock | None = None,
    on_progress: Callable[[str, int], None] | None = None,
    opened: tuple[Sequence[Source], Sequence[SourceError]] | None = None,
    alerts: Path | None = None,
    rules: list[Rule] | None = None,
    alert_listeners: Sequence[Callable[[list[dict[str, Any]]], None]] = (),
    incident_listeners: Sequence[Callable[[list[dict[str, Any]]], None]] = (),
    checkpoint_seconds: float | None = None,
    behind: Callable[[], bool] | None = None,
    on_commit_days: Callable[[set[str]], None] | None = None,
    metrics: PipelineMetrics | None = None,
) -> RunSummary:
    """Ingest files into the lake at `lake`, resuming from its last checkpoint.

    `opened` passes sources the caller already opened (to size a progress bar, or a stream).
    A stream commits every `checkpoint_seconds` as well, and its detector judges every batch
    as the live service's does, less often while `behind()` says the stream is lagging.
    `on_commit_days` is told the days each commit wrote (Glue sync); `metrics` are fed the
    run's figures (for CloudWatch).
    """
    sources, errors = opened if opened is not None else open_inputs(inputs, config)
    table = open_lake(lake, writer=True, new_format=LakeFormat(config.lake.format))
    sink = JsonLinesFile(dead_letter or default_dead_letter(table))
    alert_sink = JsonLinesFile(alerts) if alerts is not None else None
    incident_sink = JsonLinesFile(incidents_path_for(alerts)) if alerts is not None else None
    detector: InBackground | None = None
    try:
        # A file run hands the commit thread one commit at a time: its rows (2 M) are the
        # run's largest memory, and a second in flight held 300 MB more at 10 M events for no
        # speed (docs/BENCHMARKS.md). A stream keeps two: its commits wait for the detector's
        # state, and the pipeline must not.
        writer = LakeWriter(table, on_days=on_commit_days, in_flight=1 if behind is None else 2)
        operators: list[Operator] = [writer, TrafficAggregates()]
        watermark = Watermark(
            lateness_s=config.engine.lateness_s,
            idle_timeout_s=config.engine.idle_timeout_s,
            clock=clock,
        )
        meter = None
        if metrics is not None:
            from ecomwatch.sources.kinesis import KinesisSource  # boto3: only when metered

            streams = [s for s in sources if isinstance(s, KinesisSource)]
            meter = RunMeter(
                metrics,
                commit_seconds=writer.commit_seconds,
                durable_commits=lambda: writer.durable_commits,
                last_commit_at=lambda: writer.last_commit_at,
                watermark_us=watermark.current,
                stream=streams[0] if streams else None,
            )
            alert_listeners = [*alert_listeners, meter.alerts]
        if alert_sink is not None:
            # File input is judged every `judge_rows` rows; a stream every batch, as the live
            # service is, less often while it lags.
            judging: dict[str, Any] = (
                {"judge_rows": config.detect.judge_rows, "threads": file_threads(config)}
                if behind is None
                else {"judge_share": config.detect.live_judge_share, "behind": behind}
            )
            # Detection works on a batch while the pipeline decodes and writes the next ones.
            detector = InBackground(
                Detector(
                    rules if rules is not None else load_rules(),
                    sink=alert_sink,
                    listeners=alert_listeners,
                    incidents=config.incidents,
                    ipv6_prefix_bits=config.detect.ipv6_prefix,
                    incident_sink=incident_sink,
                    incident_listeners=incident_listeners,
                    **judging,
                )
            )
            operators.append(detector)
        pipeline = Pipeline(
            committer=writer,
            operators=operators,
            watermark=watermark,
            dead_letter=sink,
            checkpoint_rows=config.engine.checkpoint_rows,
            checkpoint_seconds=checkpoint_seconds,
            on_batch=meter.batch if meter is not None else None,
            transforms=[WebSessions(gap_s=config.weblog.session_gap_s)],
        )
        try:
            return pipeline.run(sources, open_errors=errors, on_progress=on_progress)
        finally:
            writer.close()
            if meter is not None:
                meter.commits()
    finally:
        if detector is not None:
            detector.close()
        sink.close()
        for alert_file in (alert_sink, incident_sink):
            if alert_file is not None:
                alert_file.close()
        table.close()
