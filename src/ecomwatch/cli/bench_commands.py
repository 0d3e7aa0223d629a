"""`ecomwatch bench ingest|month|serve|judging|detector|commits|kinesis|store|weblog`: the
benchmarks, each printing one JSON line of figures with its baseline measured in the same run
(harnesses in `ecomwatch.benchmarks`; figures and how to read them in docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ecomwatch.cli.detect_commands import RulesOption, load_rules_or_exit
from ecomwatch.console import error_line

bench_app = typer.Typer(
    help="Benchmarks: one JSON line each, against a baseline measured in the same run.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

WorkdirOption = Annotated[
    Path | None,
    typer.Option(
        "--keep",
        "--workdir",
        help="Keep the working files in this directory (the next run reuses its simulated "
        "input); without it, a temporary directory removed at the end.",
    ),
]
SeedOption = Annotated[int, typer.Option(help="Simulation seed.")]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON line instead of a table.")]


@bench_app.command()
def ingest(
    events: Annotated[
        int, typer.Option(min=1000, help="Events to simulate and ingest.")
    ] = 1_000_000,
    workdir: WorkdirOption = None,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
) -> None:
    """`ecomwatch run` on simulated files against DuckDB's CSV→Parquet copy of the same files;
    the report from the lake's rollups against the same report on the CSV; memory and bytes."""
    from ecomwatch.benchmarks.ingest_bench import run_bench

    figures = run_bench(events=events, keep=workdir, seed=seed, console=err)
    _print_figures(figures, as_json)


def _print_figures(figures: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            out.print(f"{key:>32}: {value}")


@bench_app.command()
def month(
    events: Annotated[
        int, typer.Option(min=100_000, help="Events in the month (REES46 2019-Nov: 67.5 M).")
    ] = 67_500_000,
    workdir: WorkdirOption = None,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    source: Annotated[
        Path | None,
        typer.Option(
            "--input",
            exists=True,
            dir_okay=False,
            help="A CSV (.csv or .csv.gz) to time instead of a simulated month, such as "
            "REES46's own 2019-Nov.csv; --events and --seed are then unused.",
        ),
    ] = None,
) -> None:
    """A month end to end, stage by stage, as a user runs it: `run --alerts` (ingest and
    detection into the Hudi lake) against DuckDB's CSV→Parquet copy of the same file, then
    `report` and `report --exclude-bots`; memory over the run, lake bytes, alerts, incidents."""
    from ecomwatch.benchmarks.month_bench import run_month_bench

    if source is None:
        err.print(f"a month of {events:,} events: simulate once, then four stages")
    else:
        err.print(f"{source}: four stages")
    try:
        figures = run_month_bench(
            events=events, keep=workdir, seed=seed, console=err, source=source
        )
    except RuntimeError as exc:  # a stage failed, or nothing of the file was accepted
        err.print(error_line(exc))
        raise typer.Exit(1) from exc
    _print_figures(figures, as_json)


@bench_app.command()
def serve(
    seconds: Annotated[float, typer.Option(min=10, help="How long the load runs.")] = 60,
    events: Annotated[
        int, typer.Option(min=10_000, help="Events simulated for the load.")
    ] = 500_000,
    connections: Annotated[int, typer.Option(min=1, max=64)] = 4,
    workdir: WorkdirOption = None,
    rate: Annotated[
        float | None, typer.Option(help="Offer this many events/s (default: as many as taken).")
    ] = None,
    baseline_seconds: Annotated[
        float,
        typer.Option(min=5, help="How long the same load runs against a do-nothing collector."),
    ] = 30,
) -> None:
    """Load-test `serve` on loopback from a second process: events/s (and their ratio to the
    same client against a collector that keeps nothing), request and event-to-alert latency,
    memory over the run."""
    from ecomwatch.benchmarks.serve_bench import run_serve_bench

    figures = run_serve_bench(
        seconds=seconds, events=events, connections=connections, workdir=workdir,
        console=err, rate=rate, baseline_seconds=baseline_seconds,
    )  # fmt: skip
    print(json.dumps(figures))


@bench_app.command()
def judging(
    events: Annotated[int, typer.Option(min=10_000, help="Events simulated.")] = 100_000,
    batch: Annotated[
        int, typer.Option(min=100, help="Events per batch (one round each).")
    ] = 12_500,
    rules: RulesOption = None,
) -> None:
    """The detector's judging rounds alone and beside a busy Python thread (the GIL's cost:
    why `serve` judges in a process of its own)."""
    from ecomwatch.benchmarks.judging_bench import run_judging_bench

    err.print(f"judging {events:,} simulated events in batches of {batch:,}, twice")
    figures = run_judging_bench(events=events, batch=batch, rules=load_rules_or_exit(rules))
    print(json.dumps(figures))


@bench_app.command()
def detector(
    events: Annotated[int, typer.Option(min=10_000, help="Events to simulate.")] = 2_000_000,
    rounds: Annotated[int, typer.Option(min=1, help="Detector runs on the same batches.")] = 2,
    workdir: WorkdirOption = None,
    seed: SeedOption = 0,
    rules: RulesOption = None,
) -> None:
    """The detector alone on a file run's batches: its CPU seconds stage by stage, against
    decoding the same file (what detection adds to `run --alerts` on a busy machine)."""
    from ecomwatch.benchmarks.detector_bench import run_detector_bench
    from ecomwatch.config import load_config

    figures = run_detector_bench(
        events=events,
        rounds=rounds,
        seed=seed,
        rules=load_rules_or_exit(rules),
        config=load_config(),
        workdir=workdir,
        console=err,
    )
    print(json.dumps(figures))


@bench_app.command()
def incidents(
    events: Annotated[int, typer.Option(min=10_000, help="Normal events simulated.")] = 30_000,
    days: Annotated[float, typer.Option(help="Days of traffic.")] = 1.5 / 24,
    batch_seconds: Annotated[
        float, typer.Option(help="Micro-batch length in event-time seconds.")
    ] = 5.0,
    seed: Annotated[int, typer.Option(help="The scenario's random seed.")] = 11,
    rules: RulesOption = None,
) -> None:
    """Correlation's cost against the rest of detection in the same run, and its grouping of
    a labelled attack scenario's alerts into incidents."""
    from ecomwatch.benchmarks.incidents_bench import run_incidents_bench

    err.print(f"detecting and correlating an attack scenario ({events:,} normal events)")
    figures = run_incidents_bench(
        events=events,
        days=days,
        batch_s=batch_seconds,
        seed=seed,
        rules=load_rules_or_exit(rules),
    )
    print(json.dumps(figures))


@bench_app.command()
def evasive(
    seeds: Annotated[
        list[int] | None,
        typer.Option("--seed", help="A scenario seed; repeatable (default: 1 to 5)."),
    ] = None,
    events: Annotated[int, typer.Option(min=10_000, help="Ordinary events per seed.")] = 300_000,
    days: Annotated[float, typer.Option(help="Days of traffic.")] = 0.25,
    live: Annotated[
        bool, typer.Option("--live", help="Also replay each seed into a real `serve`.")
    ] = False,
    speed: Annotated[
        float, typer.Option(min=1, help="Live: event-time seconds replayed per second.")
    ] = 60.0,
    batch_seconds: Annotated[
        float, typer.Option(help="Files: micro-batch length in event-time seconds.")
    ] = 30.0,
    rules: RulesOption = None,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Detection quality on the evasive scenario over several seeds, from files (and live with
    --live), beside a WAF rate rule on the same events, checked against the targets."""
    from ecomwatch.benchmarks.evasive_bench import run_evasive_bench
    from ecomwatch.benchmarks.workdir import bench_workdir

    load_rules_or_exit(rules)  # a bad rule file fails here, before any simulation
    seeds = seeds or [1, 2, 3, 4, 5]
    with bench_workdir(workdir, "ecomwatch-bench-evasive-") as work:
        try:
            figures = run_evasive_bench(
                seeds=seeds, events=events, days=days, work=work, console=err,
                rule_files=rules, batch_s=batch_seconds, live=live, speed=speed,
            )  # fmt: skip
        except RuntimeError as exc:  # the service, the replay or a file failed: say which
            err.print(error_line(exc))
            raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps(figures))
        return
    out.print(evasive_table(figures["runs"]))
    for run in figures["runs"]:
        for missed in run["misses"]:
            out.print(f"seed {run['seed']} {run['mode']}: {missed}")
    out.print(f"targets met in {figures['targets_met_in']} of {figures['runs_scored']} runs")


def evasive_table(runs: list[dict[str, Any]]) -> Table:
    """One row per seed and mode: precision, the lowest recall, what was flagged wrongly."""
    table = Table(title="evasive scenario: ecomwatch (WAF rate rule)")
    for column in ("seed", "mode", "precision", "lowest recall", "ordinary flagged",
                   "flood delay s", "targets missed"):  # fmt: skip
        table.add_column(column)
    for run in runs:
        kind, recall = min(run["recall"].items(), key=lambda item: item[1] or 0.0)
        table.add_row(
            str(run["seed"]),
            run["mode"],
            f"{run['precision']:.3f} ({run['waf_precision']:.3f})",
            f"{kind} {recall}",
            f"{run['flagged_not_attacking']['normal']} of {run['ordinary_ips']:,}",
            str(run["flood_delay_s"]),
            str(len(run["misses"])),
        )
    return table


@bench_app.command()
def flink(
    events: Annotated[int, typer.Option(min=10_000, help="Normal events simulated.")] = 300_000,
    seed: Annotated[int, typer.Option(help="The scenario's random seed.")] = 3,
    rules: RulesOption = None,
    workdir: WorkdirOption = None,
) -> None:
    """The rules that compile for Flink on one attack scenario: embedded detect vs the Flink
    mini-cluster at parallelism 1 and 2, a pass-through Flink job and Flink's startup."""
    from ecomwatch.benchmarks.flink_bench import run_flink_bench
    from ecomwatch.benchmarks.workdir import bench_workdir
    from ecomwatch.flink.runner import FlinkRunError

    err.print(f"simulating {events:,} events; then embedded detect and four Flink jobs")
    with bench_workdir(workdir, "ecomwatch-bench-flink-") as work:
        try:
            figures = run_flink_bench(
                events=events, seed=seed, rules=load_rules_or_exit(rules), work=work
            )
        except FlinkRunError as exc:
            err.print(error_line(exc))
            raise typer.Exit(1) from exc
    print(json.dumps(figures))


@bench_app.command()
def commits(
    commits: Annotated[int, typer.Option(min=20, help="Commits to each table.")] = 300,
    events: Annotated[int, typer.Option(min=1_000, help="Events per commit.")] = 100_000,
    workdir: WorkdirOption = None,
) -> None:
    """The same small batches committed to a table cleaned and archived as ecomwatch does and
    to one never maintained: commit time at the start and end, files and bytes on disk."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ecomwatch.benchmarks.commit_bench import run_commit_bench
    from ecomwatch.benchmarks.workdir import bench_workdir

    with bench_workdir(workdir, "ecomwatch-bench-commits-") as base:
        err.print(f"{commits} commits of {events:,} events to two tables under {base}")
        with Progress(
            TextColumn("[bold]commits"), BarColumn(), MofNCompleteColumn(), console=err
        ) as progress:
            task = progress.add_task("commits", total=2 * commits)
            figures = run_commit_bench(
                commits=commits,
                events=events,
                workdir=base,
                progress=lambda: progress.advance(task),
            )
    print(json.dumps(figures))


@bench_app.command()
def kinesis(
    events: Annotated[int, typer.Option(min=10_000, help="Events in the stream.")] = 200_000,
    shards: Annotated[int, typer.Option(min=1, max=50)] = 4,
    per_record: Annotated[int, typer.Option(min=1, help="Events packed in a record.")] = 500,
    live_seconds: Annotated[float, typer.Option(help="Length of the live phase.")] = 20,
    live_rate: Annotated[float, typer.Option(help="Events/s produced while live.")] = 2_000,
    endpoint: Annotated[
        str | None,
        typer.Option(help="A Kinesis-compatible server (default: kinesis-local from services/)."),
    ] = None,
    server: Annotated[
        str, typer.Option(help="Server started for the bench: kinesis-local or moto.")
    ] = "kinesis-local",
    workdir: WorkdirOption = None,
) -> None:
    """A stream consumed into the lake with detection, against a do-nothing consumer of the
    same stream (the server's ceiling); memory and lag while a live producer runs."""
    from ecomwatch.benchmarks.kinesis_bench import SERVERS, run_kinesis_bench

    if server not in SERVERS:
        err.print(error_line(f"--server must be one of {', '.join(SERVERS)}, not {server!r}"))
        raise typer.Exit(2)
    figures = run_kinesis_bench(
        events=events, shards=shards, per_record=per_record, live_seconds=live_seconds,
        live_rate=live_rate, endpoint=endpoint, server=server, workdir=workdir, console=err,
    )  # fmt: skip
    print(json.dumps(figures))


@bench_app.command()
def store(
    alerts: Annotated[
        int,
        typer.Option(
            min=100,
            help="Alert lines written (on moto, a few hundred: its transactions copy the whole "
            "table for each write).",
        ),
    ] = 10_000,
    events: Annotated[int, typer.Option(min=10_000, help="Events of the detect runs.")] = 200_000,
    server: Annotated[
        str,
        typer.Option(help="DynamoDB server: dynalite (one call a write) or moto (transactions)."),
    ] = "dynalite",
    endpoint: Annotated[
        str | None, typer.Option(help="A DynamoDB-compatible server instead of starting one.")
    ] = None,
) -> None:
    """Alerts with escalations into SQLite (the baseline) and DynamoDB, and `detect` with a
    DynamoDB store against `detect` without one."""
    from ecomwatch.benchmarks.store_bench import SERVERS, run_store_bench

    if server not in SERVERS:
        err.print(error_line(f"--server must be one of {', '.join(SERVERS)}, not {server!r}"))
        raise typer.Exit(2)
    figures = run_store_bench(
        alerts=alerts, events=events, server=server, endpoint=endpoint, console=err
    )
    print(json.dumps(figures))


@bench_app.command()
def weblog(
    lines: Annotated[int, typer.Option(min=10_000, help="Log lines simulated.")] = 1_000_000,
    workdir: WorkdirOption = None,
    repeat: Annotated[
        int, typer.Option(min=1, help="Runs of each figure, taken in turn; the fastest counts.")
    ] = 3,
) -> None:
    """Decoding a combined-format access log against reading its lines with no parsing."""
    from ecomwatch.benchmarks.weblog_bench import run_weblog_bench
    from ecomwatch.benchmarks.workdir import bench_workdir

    err.print(f"writing and decoding a {lines:,}-line access log, {repeat} runs of each figure")
    with bench_workdir(workdir, "ecomwatch-bench-weblog-") as where:
        figures = run_weblog_bench(where, lines=lines, repeat=repeat)
    print(json.dumps(figures))
