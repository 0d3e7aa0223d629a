"""The `ecomwatch` command line: the product's front door.

Exit codes: 0 done (rejected rows included); 1 done, but some inputs could not be read
(the others were processed); 2 usage or configuration error.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ecomwatch.analytics.render import html_report, print_report
from ecomwatch.analytics.report import Flagged, TimeRange, lake_report
from ecomwatch.cli.alert_outputs import (
    StoreOption,
    WebhookOption,
    close_webhook,
    open_webhook,
    read_alerts,
    store_alerts,
)
from ecomwatch.cli.bench_commands import bench_app
from ecomwatch.cli.detect_commands import RulesOption, evaluate, load_rules_or_exit, rules_app
from ecomwatch.cli.explain_command import explain
from ecomwatch.cli.lake_commands import lake_app
from ecomwatch.cli.output import print_table
from ecomwatch.cli.serve_commands import replay, serve
from ecomwatch.config import Config, ConfigError, load_config
from ecomwatch.engine.pipeline import RunSummary
from ecomwatch.lake.base import LakeError
from ecomwatch.lake.open import open_lake
from ecomwatch.process_memory import peak_rss_mb

if TYPE_CHECKING:
    from ecomwatch.detect.rules import Rule
    from ecomwatch.sinks.webhook import WebhookSink

app = typer.Typer(
    name="ecomwatch",
    help="E-commerce streaming analytics and security detection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)
app.add_typer(bench_app, name="bench")
app.add_typer(lake_app, name="lake")
app.add_typer(rules_app, name="rules")
app.command()(evaluate)
app.command()(explain)
app.command()(serve)
app.command()(replay)


EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML configuration file.", exists=True, dir_okay=False),
]


def _config(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_USAGE) from exc


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def _progress_reporter(total: int, enabled: bool) -> tuple[Any, Any]:
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
        console=err,
        disable=not enabled,
        transient=False,
    )
    task = progress.add_task("ingest", total=total)
    done: dict[str, int] = {}

    def update(name: str, position: int) -> None:
        done[name] = position
        progress.update(task, completed=sum(done.values()))

    return progress, update


def _inputs(summary: RunSummary) -> str:
    streams = sum(s.name.startswith("kinesis://") for s in summary.sources)
    files = len(summary.sources) - streams
    if streams and not files:
        return "1 stream" if streams == 1 else f"{streams} streams"
    return "1 file" if files == 1 else f"{files} files"


def print_run_summary(summary: RunSummary, lake: str | Path | None, console: Console) -> None:
    from rich.table import Table

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


@app.command()
def run(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="REES46 files (.csv, .csv.gz, .jsonl, .parquet), or one stream: "
            "kinesis://STREAM (name or ARN)",
            show_default=False,
        ),
    ],
    lake: Annotated[
        str,
        typer.Option(
            "--lake", help="Lake: a directory or s3://bucket/prefix (created if missing)."
        ),
    ],
    dead_letter: Annotated[
        Path | None,
        typer.Option(
            "--dead-letter",
            help="JSON Lines file for rejected rows "
            "[default: inside the lake, .hoodie/.aux/ecomwatch/dead_letter.jsonl].",
        ),
    ] = None,
    alerts: Annotated[
        Path | None, typer.Option("--alerts", help="Also detect: alerts to this JSON Lines file.")
    ] = None,
    rules: RulesOption = None,
    store: StoreOption = None,
    webhook: WebhookOption = None,
    config: ConfigOption = None,
    checkpoint_rows: Annotated[
        int | None, typer.Option(help="Accepted rows between checkpoints.")
    ] = None,
    start_from: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="A stream never read before: trim-horizon (default), latest, or a time "
            "(2026-12-01T10:00:00Z). After that the checkpoint decides.",
        ),
    ] = None,
    until_caught_up: Annotated[
        bool,
        typer.Option(
            "--until-caught-up", help="A stream: stop once every shard is read to its tip."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Ingest files, or consume a Kinesis stream, into the lake; a rerun resumes and never
    ingests a row twice. A stream runs until SIGTERM or Ctrl-C (which drain and commit) or,
    with --until-caught-up, until every shard is read to its tip."""
    from ecomwatch.cli.stream_commands import (
        open_stream,
        print_shards,
        run_stream,
        stream_figures,
    )
    from ecomwatch.sources.kinesis_api import is_stream_uri

    settings = _config(config)
    if checkpoint_rows is not None:
        settings = settings.model_copy(
            update={
                "engine": settings.engine.model_copy(update={"checkpoint_rows": checkpoint_rows})
            }
        )
    if alerts is None and (store is not None or webhook is not None):
        raise _fail("--store and --webhook need --alerts FILE (detection runs with --alerts)")
    streams = [i for i in inputs if is_stream_uri(i)]
    if streams and len(inputs) > 1:
        raise _fail("a run reads one stream or files, not both: give kinesis://STREAM alone")
    if not streams and (start_from is not None or until_caught_up):
        raise _fail("--from and --until-caught-up apply to a stream (kinesis://STREAM)")
    loaded_rules = load_rules_or_exit(rules) if alerts is not None else None
    hook = open_webhook(webhook, alerts) if alerts is not None else None
    stream = None
    try:
        if streams:
            stream = open_stream(
                streams[0], start=start_from, until_caught_up=until_caught_up, config=settings
            )
            summary = run_stream(
                stream, lake, config=settings, dead_letter=dead_letter, alerts=alerts,
                rules=loaded_rules, alert_listeners=[hook.send] if hook is not None else [],
                console=err, quiet=as_json,
            )  # fmt: skip
        else:
            summary = _run_files(
                [Path(i) for i in inputs], lake, settings, dead_letter, alerts, loaded_rules,
                hook, as_json,
            )  # fmt: skip
    except LakeError as exc:
        raise _fail(str(exc)) from exc
    finally:
        close_webhook(hook, err)
    if alerts is not None:
        store_alerts(store, read_alerts(alerts))
    figures = stream_figures(stream) if stream is not None else {}
    if as_json:
        print(
            json.dumps(
                {**summary.to_json(), **figures, "lake": str(lake), "peak_rss_mb": peak_rss_mb()}
            )
        )
    else:
        print_run_summary(summary, lake, out)
        if stream is not None:
            print_shards(figures["shards"], out, f"Shards of {stream.name}")
            if figures["retries"]:
                out.print(f"calls retried: {json.dumps(figures['retries'])}")
    if summary.failed:
        raise typer.Exit(EXIT_INPUT_FAILED)


def _run_files(
    paths: list[Path],
    lake: str,
    settings: Config,
    dead_letter: Path | None,
    alerts: Path | None,
    rules: list[Rule] | None,
    hook: WebhookSink | None,
    quiet: bool,
) -> RunSummary:
    from ecomwatch.ingest import ingest, open_inputs

    opened = open_inputs(paths, settings)
    total = sum(s.size for s in opened[0])
    progress, update = _progress_reporter(total, err.is_terminal and not quiet)
    with progress:
        return ingest(
            paths,
            lake,
            config=settings,
            dead_letter=dead_letter,
            on_progress=update,
            opened=opened,
            alerts=alerts,
            rules=rules,
            alert_listeners=[hook.send] if hook is not None else [],
        )


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    text = value.strip().removesuffix(" UTC").replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _fail(
            f"{name} {value!r} is not a time; use e.g. 2019-11-01 or 2019-11-01T12:00:00Z"
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@app.command()
def report(
    lake: Annotated[
        str, typer.Option("--lake", help="Lake written by `ecomwatch run` (directory or s3://).")
    ],
    fmt: Annotated[str, typer.Option("--format", help="table, json or html.")] = "table",
    output: Annotated[
        Path | None,
        typer.Option("--out", help="File for --format html [default: ./report.html]."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only events at or after this time (UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only events before this time (UTC).")] = None,
    exclude_bots: Annotated[
        bool,
        typer.Option(
            "--exclude-bots",
            help="Leave out traffic of IPs, sessions and users flagged at medium or above "
            "(needs --alerts or --store).",
        ),
    ] = False,
    alerts: Annotated[
        Path | None, typer.Option("--alerts", help="Alerts file written by --alerts.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Business analytics over the lake: traffic, funnel, abandonment, categories, products."""
    if fmt not in ("table", "json", "html"):
        raise _fail(f"--format must be table, json or html, not {fmt!r}")
    start, end = _parse_time(since, "--since"), _parse_time(until, "--until")
    window = TimeRange(start, end) if start or end else None
    exclude = _flagged(alerts, store) if exclude_bots else None
    try:
        data = lake_report(open_lake(lake), window, exclude=exclude)
    except LakeError as exc:
        raise _fail(str(exc)) from exc
    if fmt == "json":
        print(json.dumps(data, default=str))
    elif fmt == "html":
        target = output or Path("report.html")
        target.write_text(html_report(data, title=f"ecomwatch report — {lake}"))
        out.print(f"report written to {target}")
    else:
        print_report(data, out)


def _flagged(alerts: Path | None, store: Path | None) -> Flagged:
    if alerts is None and store is None:
        raise _fail("--exclude-bots needs the alerts: --alerts FILE or --store FILE")
    records = []
    for path in (p for p in (alerts, store) if p is not None):
        if not path.exists():
            raise _fail(f"{path} does not exist")
    if alerts is not None:
        records += read_alerts(alerts)
    if store is not None:
        from ecomwatch.sinks.alert_store import AlertStore

        database = AlertStore(store)
        records += database.all_alerts()
        database.close()
    return Flagged.from_alerts(records)


@app.command()
def simulate(
    events: Annotated[int, typer.Option("--events", min=1, help="Number of events.")],
    output: Annotated[
        Path, typer.Option("--out", help="Output file: .csv, .csv.gz, .jsonl or .parquet.")
    ],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 0,
    days: Annotated[
        float | None,
        typer.Option(help="Days of traffic [default: events / 2.25 million, at least 1]."),
    ] = None,
    start: Annotated[str, typer.Option(help="First day (UTC).")] = "2019-11-01",
    attacks: Annotated[
        bool,
        typer.Option(
            "--attacks",
            help="Inject labelled attacks (scrapers, low-and-slow, botnets, cart abuse, a "
            "flood) and traps (an office NAT, a flash sale, heavy shoppers); the labels go to "
            "<out>.labels.json.",
        ),
    ] = False,
) -> None:
    """Write realistic synthetic shop traffic in REES46 format, with ip and user_agent."""
    from ecomwatch.simulate.traffic import TrafficSpec, generate
    from ecomwatch.simulate.writers import write_traffic

    begin = _parse_time(start, "--start")
    assert begin is not None
    spec = TrafficSpec(events=events, seed=seed, start=begin, days=days)
    with (
        err.status(f"simulating {events:,} events", spinner="dots") if err.is_terminal else _null()
    ):
        if attacks:
            from ecomwatch.simulate.attacks import (
                AttackScenario,
                in_chunks,
                labels_path_for,
                write_labels,
            )

            table, labels = AttackScenario(spec).build()
            rows = write_traffic(in_chunks(table), output)
            write_labels(labels, labels_path_for(output))
            out.print(f"labels of {len(labels['ips']):,} IPs → {labels_path_for(output)}")
        else:
            rows = write_traffic(generate(spec), output)
    out.print(f"wrote {rows:,} events to {output}")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


@app.command()
def detect(
    inputs: Annotated[list[Path], typer.Argument(help="REES46 files with ip and user_agent")],
    alerts: Annotated[Path, typer.Option("--alerts", help="JSON Lines file for the alerts.")],
    rules: RulesOption = None,
    store: StoreOption = None,
    webhook: WebhookOption = None,
    config: ConfigOption = None,
) -> None:
    """Detection only (no lake): bots, scrapers, cart abuse and surges, alerts to JSON Lines."""
    from ecomwatch.detect.run import detect as run_detect
    from ecomwatch.detect.run import write_alerts
    from ecomwatch.ingest import open_inputs

    settings = _config(config)
    loaded = load_rules_or_exit(rules)
    sources, errors = open_inputs(inputs, settings)
    hook = open_webhook(webhook, alerts)
    try:
        summary, raised = run_detect(
            sources,
            loaded,
            config=settings,
            open_errors=errors,
            alert_listeners=[hook.send] if hook is not None else [],
        )
    finally:
        close_webhook(hook, err)
    write_alerts(raised, alerts)
    store_alerts(store, [a.to_json() for a in raised])
    by_severity: dict[str, int] = {}
    for alert in raised:
        by_severity[alert.severity.value] = by_severity.get(alert.severity.value, 0) + 1
    out.print(
        f"{summary.read:,} rows read, {summary.accepted:,} accepted; {len(raised)} alert(s) "
        f"{by_severity} → {alerts}"
    )


@app.command()
def blocklist(
    store: Annotated[Path, typer.Option("--store", help="SQLite store written by --store.")],
    fmt: Annotated[str, typer.Option("--format", help="nginx or json.")] = "nginx",
) -> None:
    """Export the blocks in force (IPs and /24 subnets alerted at medium or above)."""
    from ecomwatch.sinks.alert_store import AlertStore, nginx_blocklist

    if fmt not in ("nginx", "json"):
        raise _fail(f"--format must be nginx or json, not {fmt!r}")
    if not store.exists():
        raise _fail(f"{store} does not exist; write one with `ecomwatch detect … --store FILE`")
    database = AlertStore(store)
    blocks = database.blocklist()
    database.close()
    print(
        json.dumps(blocks) if fmt == "json" else nginx_blocklist(blocks),
        end="" if fmt == "nginx" else "\n",
    )


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo writes its files.")
    ] = Path("demo-output"),
    events: Annotated[int, typer.Option(min=1000, help="Events to simulate.")] = 200_000,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Instead: start `serve` and replay a shop's 2.4 hours with attacks into it, "
            "60 times faster than real time; open the dashboard and watch.",
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the --live dashboard.")] = 8080,
) -> None:
    """Simulate a day of traffic, ingest it, and write the report: the whole pipeline in one go."""
    if live:
        from ecomwatch.cli.serve_commands import live_demo

        live_demo(directory, port)
        return
    from ecomwatch.ingest import ingest
    from ecomwatch.simulate.traffic import TrafficSpec, generate
    from ecomwatch.simulate.writers import write_traffic

    directory.mkdir(parents=True, exist_ok=True)
    sample = directory / "sample.csv"
    lake = directory / "lake"
    if not sample.exists():
        out.print(f"1/3 simulating {events:,} events → {sample}")
        write_traffic(generate(TrafficSpec(events=events, seed=7)), sample)
    else:
        out.print(f"1/3 using the existing sample {sample}")
    out.print(f"2/3 ingesting into the lake {lake}")
    settings = _config(None)
    summary = ingest([sample], lake, config=settings)
    print_run_summary(summary, lake, out)
    out.print("3/3 report")
    data = lake_report(open_lake(lake))
    print_report(data, out)
    page = directory / "report.html"
    page.write_text(html_report(data, title="ecomwatch demo report"))
    (directory / "report.json").write_text(json.dumps(data, default=str, indent=2))
    out.print(
        f"\noutputs: lake {lake}, report {page} (open in a browser), "
        f"JSON {directory / 'report.json'}"
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; the next run resumes from the last checkpoint")
        sys.exit(130)


if __name__ == "__main__":
    main()
