"""The alert sinks beside the JSON Lines file: the state store (SQLite or DynamoDB) and a
webhook."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ecomwatch.sinks.jsonl import read_json_lines
from ecomwatch.sinks.webhook import WebhookSink

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
        help="Also POST alerts as JSON to this URL (retried with backoff; undeliverable "
        "alerts go to <alerts>.webhook-failures.jsonl).",
    ),
]


def open_webhook(url: str | None, alerts: Path) -> WebhookSink | None:
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"--webhook must be an http(s) URL, not {url!r}")
    return WebhookSink(url, alerts.with_name(alerts.name + ".webhook-failures.jsonl"))


def close_webhook(webhook: WebhookSink | None, console: Console) -> None:
    if webhook is None:
        return
    webhook.close()
    kept = f"; {webhook.failed} kept in {webhook.failures}" if webhook.failed else ""
    console.print(f"webhook: {webhook.delivered} alert(s) delivered{kept}")


def store_alerts(
    store: str | None, records: list[dict[str, Any]], console: Console, beside: Path | None = None
) -> None:
    """Write alerts to the store; say what it could not write and where that was kept."""
    if store is None:
        return
    from ecomwatch.sinks.dynamodb_store import StoreError
    from ecomwatch.sinks.stores import open_store

    try:
        database = open_store(store, beside=beside)
    except StoreError as exc:
        console.print(f"[red]error:[/] --store {store}: {exc}")
        raise typer.Exit(1) from exc
    try:
        database.add(records)
    finally:
        database.close()
    resent, failed = getattr(database, "resent", 0), getattr(database, "failed", 0)
    if resent:
        console.print(f"store: {resent:,} write(s) kept by an earlier run sent again")
    if failed:
        failures, why = database.failures, database.unreachable
        console.print(
            f"[red]store: {failed:,} write(s) could not be made[/] ({why}); kept in "
            f"{failures} and sent again the next time the store is opened",
            markup=True,
        )
        raise typer.Exit(1)


def open_store_to_read(store: str, console: Console) -> Any:
    """A store an earlier run wrote, for explain, blocklist and --exclude-bots."""
    from ecomwatch.sinks.dynamodb_store import StoreError
    from ecomwatch.sinks.stores import open_store

    try:
        return open_store(store, create=False)
    except FileNotFoundError:
        console.print(
            f"[red]error:[/] {store} does not exist; write one with "
            "`ecomwatch detect … --store FILE` (or run … --alerts FILE --store FILE)"
        )
    except StoreError as exc:
        console.print(f"[red]error:[/] --store {store}: {exc}")
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
