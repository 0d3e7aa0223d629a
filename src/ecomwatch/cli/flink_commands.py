"""`ecomwatch flink compile|run`: the same rules as a PyFlink job, and a local run of it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ecomwatch.cli.alert_outputs import (
    StoreOption,
    alerts_line,
    close_store_writer,
    incidents_line,
    latest_alerts,
    open_store_writer,
)
from ecomwatch.cli.detect_commands import RulesOption, load_rules_or_exit
from ecomwatch.config import ConfigError, load_config
from ecomwatch.console import error_line
from ecomwatch.flink.connectors import Endpoint, EndpointError
from ecomwatch.flink.job_dir import write_job
from ecomwatch.flink.runner import FlinkRun, FlinkRunError, run_job

flink_app = typer.Typer(
    help="Scale out: compile the detection rules to a PyFlink SQL job and run it.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _endpoint(text: str, *, sink: bool) -> Endpoint:
    try:
        return Endpoint.parse(text, sink=sink)
    except EndpointError as exc:
        err.print(error_line(f"--{'sink' if sink else 'source'} {exc}"))
        raise typer.Exit(2) from exc


@flink_app.command("compile")
def compile_job(
    source: Annotated[
        str, typer.Option(help="files:DIR (REES46 CSV files) or kinesis:STREAM_ARN (JSON).")
    ],
    sink: Annotated[str, typer.Option(help="files:DIR, kinesis:STREAM_ARN or print.")],
    out_dir: Annotated[Path, typer.Option("--out", help="The job directory to write.")],
    rules: RulesOption = None,
    parallelism: Annotated[int, typer.Option(min=1, help="The job's parallelism.")] = 1,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML configuration (the watermark's lateness: engine.lateness_s)."),
    ] = None,
) -> None:
    """Write a self-contained PyFlink job (job.py, job.json, README.md) for the rules that
    compile; the others are named (the job's README.md says why each is left out)."""
    try:
        settings = load_config(config)
    except ConfigError as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from exc
    loaded = load_rules_or_exit(rules)
    try:
        job = write_job(
            out_dir,
            loaded,
            source=_endpoint(source, sink=False),
            sink=_endpoint(sink, sink=True),
            lateness_s=settings.engine.lateness_s,
            parallelism=parallelism,
            ipv6_prefix_bits=settings.detect.ipv6_prefix,
        )
    except ValueError as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from exc
    out.print(f"wrote {job.directory}/ (job.py, job.json, README.md): {len(job.compiled)} rules")
    if job.skipped:
        out.print(
            f"left out {len(job.skipped)} rules (job README.md and `ecomwatch rules list "
            f"--engines` say why): {', '.join(job.skipped)}"
        )
    out.print(f"run it here with: ecomwatch flink run {job.directory}")


@flink_app.command()
def run(
    job_dir: Annotated[Path, typer.Argument(help="A directory written by `flink compile`.")],
    parallelism: Annotated[
        int | None, typer.Option(min=1, help="Override the job's parallelism.")
    ] = None,
    alerts: Annotated[
        Path | None,
        typer.Option(
            help="Write the job's alerts here (files sink), correlated into incidents "
            "(<stem>.incidents.jsonl beside it), as `detect` writes them."
        ),
    ] = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run a compiled job on a local Flink mini-cluster (PyFlink in .venv-flink) to the end of
    its input; alerts come out in the embedded detector's JSON schema."""
    if store is not None and alerts is None:
        err.print(error_line("--store needs --alerts FILE (the journal is kept beside it)"))
        raise typer.Exit(2)
    try:
        with err.status("running the Flink job on a local mini-cluster…"):
            done = run_job(job_dir, parallelism=parallelism)
    except FlinkRunError as exc:
        err.print(error_line(exc))
        raise typer.Exit(1) from exc
    store_failed = False
    if alerts is not None:
        store_failed = _write_alerts(done, alerts, store)
    by_rule = dict(sorted(Counter(alert["rule"] for alert in done.alerts).items()))
    summary = {
        "seconds": round(done.seconds, 1),
        "alert_lines": len(done.alerts),
        "by_rule": by_rule,
        "log": str(done.log),
    }
    if as_json:
        print(json.dumps(summary))
        raise typer.Exit(1 if store_failed else 0)
    out.print(f"Flink job finished in {summary['seconds']} s: {len(done.alerts)} alert lines")
    for rule, count in by_rule.items():
        out.print(f"  {rule}: {count}")
    if alerts is not None:
        out.print(alerts_line(latest_alerts(done.alerts), alerts))
        out.print(incidents_line(alerts))
    if store_failed:
        raise typer.Exit(1)


def _write_alerts(done: FlinkRun, alerts: Path, store: str | None) -> bool:
    """The job's alerts, correlated into incidents, to `alerts` and its incidents file, and to
    the store; True when some store writes failed."""
    from ecomwatch.config import IncidentsConfig
    from ecomwatch.detect.incident import incidents_path_for
    from ecomwatch.detect.run import write_records
    from ecomwatch.flink.incidents import correlate

    spec = done.spec
    correlated, incidents = correlate(
        done.alerts,
        settings=IncidentsConfig(),
        horizon_s=2 * max(rule["retention_s"] for rule in spec["rules"]),
        lateness_s=spec["lateness_s"],
        cooldowns_s={rule["name"]: rule["cooldown_s"] for rule in spec["rules"]},
    )
    write_records(correlated, alerts)
    write_records(incidents, incidents_path_for(alerts))
    writer = open_store_writer(store, err, alerts)
    if writer is not None:
        writer.send(correlated)
        writer.send_incidents(incidents)
    return close_store_writer(writer, store, err)
