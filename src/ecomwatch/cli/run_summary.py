"""What a run is told and tells: times given on the command line; its progress bar; the
summary it prints (one row per input, totals that add up, what failed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ecomwatch.console import error_line, print_table
from ecomwatch.engine.pipeline import RunSummary

err = Console(stderr=True, soft_wrap=True)


def _inputs(summary: RunSummary) -> str:
    streams = sum(s.name.startswith("kinesis://") for s in summary.sources)
    files = len(summary.sources) - streams
    if streams and not files:
        return "1 stream" if streams == 1 else f"{streams} streams"
    return "1 file" if files == 1 else f"{files} files"


def print_run_summary(summary: RunSummary, lake: str | Path | None, console: Console) -> None:
    table = Table(title="Ingest summary", title_justify="left")
    for column in ("file", "status", "read", "accepted", "rejected", "late", "notes"):
        table.add_column(
            column,
            justify="right" if column in ("read", "accepted", "rejected", "late") else "left",
        )
    for s in summary.sources:
        notes = []
        if s.resumed_from_line:
            notes.append(f"resumed at line {s.resumed_from_line:,}")
        notes += [f"{k}: {v:,}" for k, v in s.repaired.items()]
        if s.error:
            notes.append(s.error)
        table.add_row(
            s.name,
            s.status.value,
            f"{s.read:,}",
            f"{s.accepted:,}",
            f"{s.rejected:,}",
            f"{s.late:,}",
            "; ".join(notes),
        )
    print_table(console, table)
    console.print(
        f"{_inputs(summary)}, {summary.read:,} rows read = {summary.accepted:,} accepted"
        f" + {summary.rejected:,} rejected, {summary.late:,} late; "
        f"{summary.seconds:.1f} s, {summary.events_per_s:,.0f} events/s"
    )
    if lake is not None:
        console.print(f"lake: {lake}")
    if summary.dead_letter:
        console.print(f"rejected rows: {summary.dead_letter}")
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} input(s) failed[/]; the others were ingested")
        for failed in summary.failed:  # one line each on stderr, for logs and scripts
            err.print(f"error: {failed.name}: {failed.error}", markup=False, highlight=False)


def parse_time(value: str | None, name: str) -> datetime | None:
    """A time option (`2019-11-01`, `2019-11-01T12:00:00Z`, REES46's `… UTC`); UTC if no zone."""
    if value is None:
        return None
    text = value.strip().removesuffix(" UTC").replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        err.print(
            error_line(
                f"{name} {value!r} is not a time; use e.g. 2019-11-01 or 2019-11-01T12:00:00Z"
            )
        )
        raise typer.Exit(2) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def progress_reporter(total: int, console: Console, *, enabled: bool) -> tuple[Any, Any]:
    """A Rich progress bar over input bytes (on a terminal), and its update callback."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
    task = progress.add_task("ingest", total=total)
    done: dict[str, int] = {}

    def update(name: str, position: int) -> None:
        done[name] = position
        progress.update(task, completed=sum(done.values()))

    return progress, update
