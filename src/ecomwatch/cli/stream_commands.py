"""The command line's stream half: `run kinesis://STREAM` (consume into the lake),
`replay FILE... --to kinesis://STREAM` (produce), and the shard table of `lake info`."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ecomwatch.config import Config
from ecomwatch.console import error_line, print_table
from ecomwatch.detect.rules import Rule
from ecomwatch.engine.pipeline import RunSummary
from ecomwatch.pipeline_metrics import PipelineMetrics
from ecomwatch.sources.base import SourceError
from ecomwatch.sources.kinesis import KinesisSource, PollSettings, StartAt

EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and Ctrl-C end the stream's reading; the engine then drains and commits."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def poll_settings(config: Config) -> PollSettings:
    k = config.kinesis
    return PollSettings(
        poll_interval_s=k.poll_interval_s,
        idle_poll_s=k.idle_poll_s,
        list_interval_s=k.list_interval_s,
        target_events=k.target_events_per_call,
        retry_for_s=k.retry_for_s,
    )


def open_stream(
    uri: str, *, start: str | None, until_caught_up: bool, config: Config
) -> KinesisSource:
    """The stream source, or a usage error that says what is wrong."""
    try:
        return KinesisSource(
            uri,
            start=StartAt.parse(start) if start else None,
            until_caught_up=until_caught_up,
            settings=poll_settings(config),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def run_stream(
    source: KinesisSource,
    lake: str,
    *,
    config: Config,
    dead_letter: Path | None,
    alerts: Path | None,
    rules: list[Rule] | None,
    alert_listeners: Sequence[Callable[[list[dict[str, Any]]], None]],
    incident_listeners: Sequence[Callable[[list[dict[str, Any]]], None]],
    console: Console,
    quiet: bool,
    on_commit_days: Callable[[set[str]], None] | None = None,
    metrics: PipelineMetrics | None = None,
) -> RunSummary:
    """Consume the stream into the lake until it is caught up (if asked) or stopped."""
    from ecomwatch.ingest import ingest

    if not quiet:
        mode = "until every shard is caught up" if source.until_caught_up else "until stopped"
        console.print(f"consuming {source.name} into {lake} {mode} (Ctrl-C or SIGTERM stops)")
    with stop_on_signals(source.stop):
        return ingest(
            [],
            lake,
            config=config,
            dead_letter=dead_letter,
            opened=([source], []),
            alerts=alerts,
            rules=rules,
            alert_listeners=alert_listeners,
            incident_listeners=incident_listeners,
            checkpoint_seconds=config.serve.commit_seconds,
            behind=source.behind,
            on_commit_days=on_commit_days,
            metrics=metrics,
        )


def stream_figures(source: KinesisSource) -> dict[str, Any]:
    """Per shard: counts, checkpointed place and lag, for the summary and `--json`."""
    return {
        "stream": source.stream.uri,
        "retries": source.calls.retries.by_error,
        "shards": {shard_id: shard.to_json() for shard_id, shard in sorted(source.shards.items())},
    }


def print_shards(shards: dict[str, dict[str, Any]], console: Console, title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("shard", no_wrap=True, min_width=20)  # a shard id stays whole
    for column in ("state", "read", "accepted", "rejected", "behind", "sequence"):
        table.add_column(
            column,
            justify="left" if column == "state" else "right",
            overflow="fold",  # a sequence number whole, over lines, in a log too
        )
    for shard_id, s in shards.items():
        behind = s.get("millis_behind")
        table.add_row(
            shard_id,
            "finished" if s.get("finished") else "open",
            f"{s.get('read', 0):,}",
            f"{s.get('accepted', 0):,}",
            f"{s.get('rejected', 0):,}",
            "" if behind is None else f"{behind / 1000:,.1f} s",
            str(s.get("sequence") or "(none yet)"),
        )
    print_table(console, table)


def checkpointed_streams(checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """The streams a lake's checkpoint knows, with each shard's place."""
    streams: dict[str, Any] = {}
    for entry in (checkpoint or {}).get("sources", {}).values():
        cursor = (entry.get("position") or {}).get("cursor")
        if cursor and "shards" in cursor:
            streams[entry["name"]] = {"start": cursor.get("start"), "shards": cursor["shards"]}
    return streams


def produce(
    inputs: list[Path],
    uri: str,
    *,
    rate: float | None,
    speed: float | None,
    per_record: int,
    partition_key: str,
    console: Console,
    as_json: bool,
    config: Config | None = None,
) -> None:
    """`replay --to kinesis://STREAM`."""
    from ecomwatch.serve.stream_replay import replay_to_stream
    from ecomwatch.sinks.kinesis_producer import PartitionBy
    from ecomwatch.sources.kinesis_api import StreamRef

    try:
        stream = StreamRef.parse(uri)
        key = PartitionBy(partition_key)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    started = time.perf_counter()
    try:
        stats = replay_to_stream(
            inputs, stream, rate=rate, speed=speed, per_record=per_record, partition_by=key,
            config=config,
        )  # fmt: skip
    except (SourceError, OSError, ValueError) as exc:
        console.print(error_line(exc))
        raise typer.Exit(EXIT_INPUT_FAILED) from exc
    figures = stats.to_json()
    if as_json:
        print(json.dumps({"stream": stream.uri, **figures}))
        return
    console.print(
        f"put {figures['events']:,} events in {figures['records']:,} records "
        f"({figures['calls']:,} PutRecords calls, {figures['retried_records']:,} records resent"
        f"{': ' + json.dumps(figures['failed_by_error']) if figures['failed_by_error'] else ''}) "
        f"to {stream.uri} in {time.perf_counter() - started:.1f} s, "
        f"{figures['events_per_s']:,} events/s"
    )
