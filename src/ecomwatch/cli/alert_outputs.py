"""What a run feeds beside the lake and the alerts file: the state store (SQLite or
DynamoDB), a webhook, and the table's Glue registration."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ecomwatch.config import WebhookConfig
from ecomwatch.console import error_line
from ecomwatch.detect.rules import Severity
from ecomwatch.sinks.incident_notifier import IncidentNotifier
from ecomwatch.sinks.jsonl import read_json_lines
from ecomwatch.sinks.webhook import WebhookSink

if TYPE_CHECKING:
    from ecomwatch.config import Config
    from ecomwatch.lake.glue_sync import GlueSync
    from ecomwatch.sinks.store_writer import StoreWriter

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Also keep alerts, entities and blocks here: a SQLite file, or dynamodb://TABLE.",
    ),
]
WebhookOption = Annotated[
    str | None,
    typer.Option(
        "--webhook",
        help="Also POST a message per incident to this URL: when it opens, escalates and "
        "resolves; low ones in a digest (the config's webhook.format json|slack, "
        "webhook.each_alert). Retried with backoff; undeliverable ones go to "
        "<alerts>.webhook-failures.jsonl.",
    ),
]


Listener = Callable[[list[dict[str, Any]]], None]


@dataclass
class Webhook:
    """A run's webhook: incident messages, and every alert too if `[webhook] each_alert`."""

    notifier: IncidentNotifier
    messages: WebhookSink
    alerts: WebhookSink | None

    @property
    def alert_listeners(self) -> list[Listener]:
        return [self.alerts.send] if self.alerts is not None else []

    @property
    def incident_listeners(self) -> list[Listener]:
        return [self.notifier.records]


@dataclass(frozen=True)
class Listeners:
    """What a run hands its new alerts and its changed incident records to."""

    alerts: list[Listener]
    incidents: list[Listener]

    @classmethod
    def of(cls, webhook: Webhook | None, writer: StoreWriter | None) -> Listeners:
        alerts: list[Listener] = [writer.send] if writer is not None else []
        incidents: list[Listener] = [writer.send_incidents] if writer is not None else []
        if webhook is None:
            return cls(alerts, incidents)
        return cls(alerts + webhook.alert_listeners, incidents + webhook.incident_listeners)


def open_webhook(
    url: str | None,
    alerts: Path,
    settings: WebhookConfig,
    *,
    live: bool = False,
    dashboard: str | None = None,
) -> Webhook | None:
    """`live`: a service or a stream, whose messages wait in wall time too (not only in event
    time); `dashboard`: the service's own address, for links when `dashboard_url` is not set."""
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"--webhook must be an http(s) URL, not {url!r}")
    messages = WebhookSink(
        url,
        alerts.with_name(alerts.name + ".webhook-failures.jsonl"),
        one_per_post=True,
        kind="message",
    )
    home = settings.dashboard_url or dashboard
    notifier = IncidentNotifier(
        messages.send,
        style=settings.format,
        min_severity=Severity(settings.min_severity),
        digest_s=settings.digest_minutes * 60,
        group_wait_s=settings.group_wait_s,
        group_interval_s=settings.group_interval_s,
        link=(lambda i: f"{home.rstrip('/')}/#/incident/{i}") if home else None,
        clock=time.monotonic if live else None,
    )
    if live:
        notifier.start_ticking()
    each = None
    if settings.each_alert:
        each = WebhookSink(url, alerts.with_name(alerts.name + ".webhook-alert-failures.jsonl"))
    return Webhook(notifier, messages, each)


def close_webhook(webhook: Webhook | None, console: Console) -> None:
    if webhook is None:
        return
    webhook.notifier.close()  # the digest of what is pending
    for sink in (webhook.messages, webhook.alerts):
        if sink is None:
            continue
        sink.close()
        what = "alert(s)" if sink is webhook.alerts else "incident message(s)"
        counts = webhook.notifier.sent if sink is webhook.messages else {}
        detail = f" ({', '.join(f'{k} {n}' for k, n in sorted(counts.items()))})" if counts else ""
        kept = f"; {sink.failed} kept in {sink.failures}" if sink.failed else ""
        console.print(f"webhook: {sink.delivered} {what} delivered{detail}{kept}")


def open_store_writer(store: str | None, console: Console, beside: Path) -> StoreWriter | None:
    """The store, written while the run goes on (alerts as they are raised)."""
    if store is None:
        return None
    from ecomwatch.sinks.dynamodb_items import StoreError
    from ecomwatch.sinks.store_writer import StoreWriter
    from ecomwatch.sinks.stores import journal_file, open_store

    try:
        return StoreWriter(open_store(store, beside=beside), journal_file(store, beside))
    except StoreError as exc:
        console.print(error_line(f"--store {store}: {exc}"))
        raise typer.Exit(1) from exc


def close_store_writer(writer: StoreWriter | None, store: str | None, console: Console) -> bool:
    """Wait for the store to hold every alert; say what it could not write and where that was
    kept. True when some writes failed (the command then exits 1)."""
    if writer is None:
        return False
    try:
        writer.close()
    except Exception as exc:  # a local store that cannot write (a full disk, a locked file)
        console.print(
            f"[red]store: {store} could not be written[/] ({exc}); the alerts are kept in "
            f"{writer.journal} and written the next time the store is opened",
            markup=True,
        )
        return True
    database = writer.store
    recovered = writer.recovered + database.resent
    if recovered:
        console.print(f"store: {recovered:,} write(s) left by an earlier run made now")
    waited = f", {writer.drain_s:.1f} s after the run" if writer.drain_s >= 0.05 else ""
    console.print(
        f"store: {writer.written:,} alert line(s) and {writer.incidents_written:,} incident "
        f"record(s) written to {store}{waited}"
    )
    if database.failed:
        console.print(
            f"[red]store: {database.failed:,} write(s) could not be made[/] "
            f"({database.unreachable}); kept in {database.failures} and sent again the next "
            "time the store is opened",
            markup=True,
        )
        return True
    return False


def open_store_to_read(store: str, console: Console) -> Any:
    """A store an earlier run wrote, for explain, blocklist and --exclude-bots."""
    from ecomwatch.sinks.dynamodb_items import StoreError
    from ecomwatch.sinks.stores import open_store

    try:
        return open_store(store, create=False)
    except FileNotFoundError:
        console.print(
            error_line(
                f"{store} does not exist; write one with "
                "`ecomwatch detect … --store FILE` (or run … --alerts FILE --store FILE)"
            )
        )
    except StoreError as exc:
        console.print(error_line(f"--store {store}: {exc}"))
    raise typer.Exit(2)


def read_alerts(path: Path) -> list[dict[str, Any]]:
    """The alerts of a JSON Lines file written by --alerts."""
    return read_json_lines(path)


def latest_alerts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per alert: an escalation is written again under its id, its last version stands."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest[row["alert_id"]] = row
    return list(latest.values())


def alerts_line(rows: list[dict[str, Any]], path: Path) -> str:
    """`436 alerts (high 406, medium 30) → alerts.jsonl`."""
    by_severity: dict[str, int] = {}
    for row in rows:
        by_severity[row["severity"]] = by_severity.get(row["severity"], 0) + 1
    counts = ", ".join(f"{severity} {n:,}" for severity, n in by_severity.items())
    return f"{len(rows):,} alerts ({counts or 'none'}) → {path}"


def current_incidents(alerts: Path) -> list[dict[str, Any]]:
    """The latest record of each incident (merged ones left out) in the log beside `alerts`."""
    from ecomwatch.detect.incident_log import read_incident_log

    latest = read_incident_log(alerts) or {}
    return [r for r in latest.values() if r["state"] != "merged"]


def incidents_line(alerts: Path) -> str:
    """`16 incidents (open 3, resolved 13) → alerts.incidents.jsonl (ecomwatch incidents list)`."""
    from ecomwatch.detect.incident import incidents_path_for

    by_state: dict[str, int] = {}
    for record in current_incidents(alerts):
        by_state[record["state"]] = by_state.get(record["state"], 0) + 1
    counts = ", ".join(f"{state} {n:,}" for state, n in sorted(by_state.items()))
    return (
        f"{sum(by_state.values()):,} incidents ({counts or 'none'}) → "
        f"{incidents_path_for(alerts)} (ecomwatch incidents list --alerts {alerts})"
    )


def open_glue_sync(lake: str, settings: Config, console: Console) -> GlueSync | None:
    """`[aws] glue_sync = true`: the table registered in Glue now, new days added after
    commits."""
    if not settings.aws.glue_sync:
        return None
    from ecomwatch.lake.glue_sync import GlueSync
    from ecomwatch.lake.hudi_table import HudiTable
    from ecomwatch.lake.open import LakeFormat, detect_format

    found = detect_format(lake) or LakeFormat(settings.lake.format)
    if found is not LakeFormat.HUDI:
        console.print(
            error_line(
                "aws.glue_sync registers Hudi tables for Athena; this lake is in the plain "
                "Parquet format (query it with DuckDB, or use a Hudi lake)"
            )
        )
        raise typer.Exit(2)
    partitions, location = [], lake  # a new lake: nothing to list yet
    if detect_format(lake) is LakeFormat.HUDI:
        table = HudiTable(lake)
        partitions = [base.partition for base in table.file_slices().values()]
        location = table.location
    sync = GlueSync(location, partitions, settings.aws)
    if sync.error is not None:
        console.print(f"[yellow]glue:[/] registering failed ({sync.error}); retried after commits")
    return sync


def close_glue_sync(sync: GlueSync | None, console: Console) -> bool:
    """Say what the sync added; True (exit 1) if some days are still missing from Glue."""
    if sync is None:
        return False
    missing = sync.close()
    table = f"{sync.table.database}.{sync.table.name}"
    console.print(f"glue: {len(sync.added)} partition(s) added to {table}")
    if missing:
        console.print(
            f"[red]glue: {len(missing)} day(s) not in {table}[/] ({sync.error}): "
            f"{', '.join(missing)}; `ecomwatch lake register` adds them"
        )
    return bool(missing)
