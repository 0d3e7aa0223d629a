"""The `ecomwatch` command line: the product's front door.

Exit codes: 0 done (rejected rows included); 1 done, but some inputs could not be read
(the others were processed) or some alerts could not be written to a remote store (kept in a
local file, sent again next time); 2 usage or configuration error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ecomwatch.analytics.render import html_report, print_report
from ecomwatch.analytics.report import Flagged, TimeRange, lake_report
from ecomwatch.cli.alert_outputs import (
    Listeners,
    StoreOption,
    WebhookOption,
    alerts_line,
    close_glue_sync,
    close_store_writer,
    close_webhook,
    current_incidents,
    incidents_line,
    latest_alerts,
    open_glue_sync,
    open_store_to_read,
    open_store_writer,
    open_webhook,
    read_alerts,
)
from ecomwatch.cli.aws_commands import aws_app
from ecomwatch.cli.bench_commands import bench_app
from ecomwatch.cli.demo_commands import demo, simulate
from ecomwatch.cli.detect_commands import RulesOption, evaluate, load_rules_or_exit, rules_app
from ecomwatch.cli.explain_command import explain
from ecomwatch.cli.flink_commands import flink_app
from ecomwatch.cli.incident_commands import incidents_app
from ecomwatch.cli.lake_commands import lake_app
from ecomwatch.cli.metrics_outputs import MetricsOption, close_metrics, metrics_kinds, open_metrics
from ecomwatch.cli.run_summary import parse_time, print_run_summary, progress_reporter
from ecomwatch.cli.serve_commands import replay, serve
from ecomwatch.cli.weblog_commands import (
    FormatOption,
    SessionCookieOption,
    UrlMapOption,
    crawlers_app,
    evaluate_logs,
    with_weblog,
)
from ecomwatch.config import Config, ConfigError, load_config
from ecomwatch.console import error_line
from ecomwatch.engine.pipeline import RunSummary
from ecomwatch.lake.base import LakeError
from ecomwatch.lake.open import open_lake
from ecomwatch.pipeline_metrics import PipelineMetrics
from ecomwatch.process_memory import peak_rss_mb

if TYPE_CHECKING:
    from collections.abc import Callable

    from ecomwatch.detect.rules import Rule

app = typer.Typer(
    name="ecomwatch",
    help="E-commerce streaming analytics and security detection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)  # a summary line stays one line in a log
err = Console(stderr=True, soft_wrap=True)
app.add_typer(bench_app, name="bench")
app.command()(simulate)
app.command()(demo)
app.add_typer(aws_app, name="aws")
app.add_typer(lake_app, name="lake")
app.add_typer(rules_app, name="rules")
app.add_typer(incidents_app, name="incidents")
app.add_typer(crawlers_app, name="crawlers")
app.add_typer(flink_app, name="flink")
app.command()(evaluate)
app.command("evaluate-logs")(evaluate_logs)
app.command()(explain)
app.command()(serve)
app.command()(replay)


EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML configuration file.", exists=True, dir_okay=False),
]


def _config(path: Path | None, **weblog: Any) -> Config:
    """The configuration, with the command line's web-log options (weblog_commands) over it;
    a bad one is a usage error."""
    from ecomwatch.decode.url_map import UrlMapError

    try:
        return with_weblog(load_config(path), **weblog)
    except (ConfigError, UrlMapError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(EXIT_USAGE) from exc


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(error_line(message))
    return typer.Exit(code)


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
            "(default: inside the lake, .hoodie/.aux/ecomwatch/dead_letter.jsonl).",
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
    metrics: MetricsOption = None,
    url_map: UrlMapOption = None,
    log_format: FormatOption = None,
    session_cookie: SessionCookieOption = None,
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

    settings = _config(
        config, url_map=url_map, log_format=log_format, session_cookie=session_cookie
    )
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
    try:
        metric_kinds = metrics_kinds(metrics, settings)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if as_json and "emf" in metric_kinds and settings.metrics.emf_path == "-":
        raise _fail(
            "--json and EMF lines would share standard output: set metrics.emf_path to a file"
        )
    loaded_rules = load_rules_or_exit(rules) if alerts is not None else None
    hook = None
    if alerts is not None:
        hook = open_webhook(webhook, alerts, settings.webhook, live=bool(streams))
    writer = open_store_writer(store, err, alerts) if alerts is not None else None
    listeners = Listeners.of(hook, writer)

    glue = open_glue_sync(lake, settings, err)
    on_days = glue.committed if glue is not None else None
    meters = PipelineMetrics() if metric_kinds else None
    publishing = open_metrics(metric_kinds, meters.registry, settings, err) if meters else None
    stream = None
    try:
        if streams:
            stream = open_stream(
                streams[0], start=start_from, until_caught_up=until_caught_up, config=settings
            )
            summary = run_stream(
                stream, lake, config=settings, dead_letter=dead_letter, alerts=alerts,
                rules=loaded_rules, alert_listeners=listeners.alerts,
                incident_listeners=listeners.incidents, console=err, quiet=as_json,
                on_commit_days=on_days, metrics=meters,
            )  # fmt: skip
        else:
            summary = _run_files(
                [Path(i) for i in inputs], lake, settings, dead_letter, alerts, loaded_rules,
                listeners, as_json, on_days, meters,
            )  # fmt: skip
    except LakeError as exc:
        raise _fail(str(exc)) from exc
    finally:
        close_webhook(hook, err)
        store_failed = close_store_writer(writer, store, err)
        glue_failed = close_glue_sync(glue, err)
        close_metrics(publishing, err)
    raised = []
    if alerts is not None:
        raised = latest_alerts(read_alerts(alerts))
    figures = stream_figures(stream) if stream is not None else {}
    if as_json:
        if alerts is not None:
            figures["alerts"] = len(raised)
            figures["incidents"] = len(current_incidents(alerts))
        print(
            json.dumps(
                {**summary.to_json(), **figures, "lake": str(lake), "peak_rss_mb": peak_rss_mb()}
            )
        )
    else:
        print_run_summary(summary, lake, out)
        if alerts is not None:
            out.print(alerts_line(raised, alerts))
            out.print(incidents_line(alerts))
        if stream is not None:
            print_shards(figures["shards"], out, f"Shards of {stream.name}")
            if figures["retries"]:
                out.print(f"calls retried: {json.dumps(figures['retries'])}")
    if store_failed or glue_failed:
        raise typer.Exit(1)
    if summary.failed:
        raise typer.Exit(EXIT_INPUT_FAILED)


def _run_files(
    paths: list[Path],
    lake: str,
    settings: Config,
    dead_letter: Path | None,
    alerts: Path | None,
    rules: list[Rule] | None,
    listeners: Listeners,
    quiet: bool,
    on_days: Callable[[set[str]], None] | None,
    metrics: PipelineMetrics | None,
) -> RunSummary:
    from ecomwatch.batch_memory import use_batch_allocator
    from ecomwatch.ingest import ingest, open_inputs

    use_batch_allocator()
    opened = open_inputs(paths, settings)
    total = sum(s.size for s in opened[0])
    progress, update = progress_reporter(total, err, enabled=err.is_terminal and not quiet)
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
            alert_listeners=listeners.alerts,
            incident_listeners=listeners.incidents,
            on_commit_days=on_days,
            metrics=metrics,
        )


@app.command()
def report(
    lake: Annotated[
        str, typer.Option("--lake", help="Lake written by `ecomwatch run` (directory or s3://).")
    ],
    fmt: Annotated[str, typer.Option("--format", help="table, json or html.")] = "table",
    output: Annotated[
        Path | None,
        typer.Option("--out", help="File for --format html (default: ./report.html)."),
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
    sql: Annotated[
        str | None,
        typer.Option(
            "--sql",
            help="Print the report's queries instead, in this dialect (athena), for the table "
            "`lake register` catalogued; nothing is read.",
        ),
    ] = None,
    database: Annotated[
        str, typer.Option("--glue-database", help="With --sql: the table's database.")
    ] = "ecomwatch",
    table: Annotated[
        str, typer.Option("--table", help="With --sql: the table's name.")
    ] = "ecomwatch_events",
) -> None:
    """Business analytics over the lake: traffic, funnel, abandonment, categories, products."""
    if sql is not None:
        if sql != "athena":
            raise _fail(f"--sql takes athena, not {sql!r}")
        from ecomwatch.analytics.athena_sql import athena_script

        print(athena_script(database, table), end="")
        return
    if fmt not in ("table", "json", "html"):
        raise _fail(f"--format must be table, json or html, not {fmt!r}")
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
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


def _flagged(alerts: Path | None, store: str | None) -> Flagged:
    if alerts is None and store is None:
        raise _fail("--exclude-bots needs the alerts: --alerts FILE or --store FILE")
    records = []
    if alerts is not None:
        if not alerts.exists():
            raise _fail(f"{alerts} does not exist")
        records += read_alerts(alerts)
    if store is not None:
        database = open_store_to_read(store, err)
        records += database.all_alerts()
        database.close()
    return Flagged.from_alerts(records)


@app.command()
def detect(
    inputs: Annotated[
        list[Path], typer.Argument(help="REES46 files with ip and user_agent, or web logs")
    ],
    alerts: Annotated[Path, typer.Option("--alerts", help="JSON Lines file for the alerts.")],
    rules: RulesOption = None,
    store: StoreOption = None,
    webhook: WebhookOption = None,
    config: ConfigOption = None,
    url_map: UrlMapOption = None,
    log_format: FormatOption = None,
    session_cookie: SessionCookieOption = None,
) -> None:
    """Detection only (no lake): bots, scrapers, cart abuse and surges, alerts to JSON Lines."""
    from ecomwatch.batch_memory import use_batch_allocator
    from ecomwatch.detect.incident import incidents_path_for
    from ecomwatch.detect.run import detect as run_detect
    from ecomwatch.detect.run import write_alerts, write_records
    from ecomwatch.ingest import open_inputs

    use_batch_allocator()
    settings = _config(
        config, url_map=url_map, log_format=log_format, session_cookie=session_cookie
    )
    incidents: list[dict[str, Any]] = []
    loaded = load_rules_or_exit(rules)
    sources, errors = open_inputs(inputs, settings)
    hook = open_webhook(webhook, alerts, settings.webhook)
    writer = open_store_writer(store, err, alerts)
    listeners = Listeners.of(hook, writer)
    try:
        summary, raised = run_detect(
            sources,
            loaded,
            config=settings,
            open_errors=errors,
            alert_listeners=listeners.alerts,
            incident_listeners=[incidents.extend, *listeners.incidents],
        )
    finally:
        close_webhook(hook, err)
        store_failed = close_store_writer(writer, store, err)
    write_alerts(raised, alerts)
    incidents_file = incidents_path_for(alerts)
    write_records(incidents, incidents_file)
    rows = [a.to_json() for a in raised]
    out.print(
        f"{summary.read:,} rows read, {summary.accepted:,} accepted; "
        + alerts_line(latest_alerts(rows), alerts)
    )
    out.print(incidents_line(alerts))
    if store_failed:
        raise typer.Exit(1)


@app.command()
def blocklist(
    store: Annotated[
        str,
        typer.Option("--store", help="The store written by --store: a file or dynamodb://TABLE."),
    ],
    fmt: Annotated[str, typer.Option("--format", help="nginx or json.")] = "nginx",
) -> None:
    """Export the blocks in force (IPs and /24 subnets alerted at medium or above)."""
    from ecomwatch.sinks.alert_store import nginx_blocklist

    if fmt not in ("nginx", "json"):
        raise _fail(f"--format must be nginx or json, not {fmt!r}")
    database = open_store_to_read(store, err)
    blocks = database.blocklist()
    database.close()
    print(
        json.dumps(blocks) if fmt == "json" else nginx_blocklist(blocks),
        end="" if fmt == "nginx" else "\n",
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; the next run resumes from the last checkpoint")
        sys.exit(130)


if __name__ == "__main__":
    main()
