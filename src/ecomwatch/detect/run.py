"""`ecomwatch detect`: the pipeline with the detector only (no lake), alerts to JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ecomwatch.config import Config
from ecomwatch.detect.alert import Alert
from ecomwatch.detect.detector import Detector
from ecomwatch.detect.rules import Rule
from ecomwatch.engine.pipeline import Pipeline, RunSummary
from ecomwatch.engine.watermark import Watermark
from ecomwatch.operators.web_sessions import WebSessions
from ecomwatch.sources.base import Source, SourceError


class NoCheckpoints:
    """Detection alone keeps no checkpoint: a rerun starts from the beginning."""

    def load(self) -> dict[str, Any] | None:
        return None

    def commit(self, checkpoint: dict[str, Any]) -> None:
        return None

    def flush(self) -> None:
        return None


def detect(
    sources: Sequence[Source],
    rules: list[Rule],
    *,
    config: Config,
    open_errors: Sequence[SourceError] = (),
    on_progress: Callable[[str, int], None] | None = None,
    alert_listeners: Sequence[Callable[[list[dict[str, Any]]], None]] = (),
    incident_listeners: Sequence[Callable[[list[dict[str, Any]]], None]] = (),
) -> tuple[RunSummary, list[Alert]]:
    detector = Detector(
        rules,
        listeners=alert_listeners,
        judge_rows=config.detect.judge_rows,
        incidents=config.incidents,
        ipv6_prefix_bits=config.detect.ipv6_prefix,
        incident_listeners=incident_listeners,
    )
    pipeline = Pipeline(
        committer=NoCheckpoints(),
        operators=[detector],
        watermark=Watermark(
            lateness_s=config.engine.lateness_s, idle_timeout_s=config.engine.idle_timeout_s
        ),
        checkpoint_rows=config.engine.checkpoint_rows,
        transforms=[WebSessions(gap_s=config.weblog.session_gap_s)],
    )
    summary = pipeline.run(sources, open_errors=open_errors, on_progress=on_progress)
    return summary, detector.alerts


def write_alerts(alerts: list[Alert], path: Path) -> None:
    write_records([alert.to_json() for alert in alerts], path)


def write_records(records: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
