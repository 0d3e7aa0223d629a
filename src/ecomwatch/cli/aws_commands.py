"""`ecomwatch aws setup|check|teardown`: the AWS resources of a pipeline (aws_resources.py)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ecomwatch.console import error_line, print_table

aws_app = typer.Typer(
    help="Create, verify and remove the AWS resources of a pipeline.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

Pipeline = Annotated[str, typer.Option("--pipeline", help="The pipeline's name (alarms, metrics).")]
Lake = Annotated[
    str | None, typer.Option("--lake", help="The lake, s3://BUCKET/PREFIX (its bucket).")
]
Stream = Annotated[str | None, typer.Option("--stream", help="Kinesis stream name.")]
Rate = Annotated[
    float, typer.Option("--events-per-second", help="Expected events/s (sets the shards).")
]
Table_ = Annotated[str | None, typer.Option("--table", help="DynamoDB table of the store.")]
Database = Annotated[str | None, typer.Option("--glue-database", help="Glue database.")]
Topic = Annotated[
    str | None,
    typer.Option("--sns-topic", help="Alarm action: an SNS topic name (created) or ARN."),
]
Alarms = Annotated[bool, typer.Option("--alarms/--no-alarms", help="The CloudWatch alarms.")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


def _resources() -> Any:
    import boto3

    from ecomwatch.aws_resources import AwsResources
    from ecomwatch.aws_settings import region

    session = boto3.session.Session()
    return AwsResources(lambda service: session.client(service, region_name=region(session)))


def _plan(**fields: Any) -> Any:
    from ecomwatch.aws_resources import Plan

    return Plan(**fields)


def _print_steps(steps: list[Any], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("resource", "name", "result", "detail"):
        table.add_column(column)
    for step in steps:
        table.add_row(step.kind, step.name, step.result, step.detail)
    print_table(out, table)


def _run(action: str, call: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        err.print(error_line(f"aws {action}: {exc}"))
        raise typer.Exit(1) from exc


@aws_app.command()
def setup(
    pipeline: Pipeline = "default",
    lake: Lake = None,
    stream: Stream = None,
    events_per_second: Rate = 1000.0,
    table: Table_ = None,
    glue_database: Database = None,
    sns_topic: Topic = None,
    alarms: Alarms = True,
    as_json: AsJson = False,
) -> None:
    """Create what is missing (tagged created-by=ecomwatch); running it again changes nothing."""
    plan = _plan(pipeline=pipeline, lake=lake, stream=stream, events_per_s=events_per_second,
                 table=table,
                 glue_database=glue_database, sns_topic=sns_topic, alarms=alarms)  # fmt: skip
    steps = _run("setup", lambda: _resources().setup(plan))
    if as_json:
        print(json.dumps([asdict(s) for s in steps]))
    else:
        _print_steps(steps, f"aws setup ({pipeline})")
    if any(s.result == "failed" for s in steps):
        raise typer.Exit(1)


@aws_app.command()
def check(
    pipeline: Pipeline = "default",
    lake: Lake = None,
    stream: Stream = None,
    table: Table_ = None,
    glue_database: Database = None,
    sns_topic: Topic = None,
    alarms: Alarms = True,
    as_json: AsJson = False,
) -> None:
    """Say whether each resource exists and which calls the credentials may not make (exit 1
    if something is missing or denied)."""
    plan = _plan(pipeline=pipeline, lake=lake, stream=stream, table=table,
                 glue_database=glue_database, sns_topic=sns_topic, alarms=alarms)  # fmt: skip
    result = _run("check", lambda: _resources().check(plan))
    if as_json:
        print(json.dumps(asdict(result)))
    else:
        _print_steps(result.resources, f"aws check ({pipeline})")
        if result.denied:
            out.print(f"[red]denied:[/] {', '.join(result.denied)}")
        elif result.permissions_note:
            out.print(f"[yellow]{result.permissions_note}[/]")
        else:
            out.print("permissions: every call the pipeline makes is allowed")
    if result.denied or any(s.result != "present" for s in result.resources):
        raise typer.Exit(1)


@aws_app.command()
def teardown(
    pipeline: Pipeline = "default",
    lake: Lake = None,
    stream: Stream = None,
    table: Table_ = None,
    glue_database: Database = None,
    sns_topic: Topic = None,
    alarms: Alarms = True,
    as_json: AsJson = False,
) -> None:
    """Delete what `setup` made (only resources tagged created-by=ecomwatch; the lake's files
    are never touched)."""
    plan = _plan(pipeline=pipeline, lake=lake, stream=stream, table=table,
                 glue_database=glue_database, sns_topic=sns_topic, alarms=alarms)  # fmt: skip
    steps = _run("teardown", lambda: _resources().teardown(plan))
    if as_json:
        print(json.dumps([asdict(s) for s in steps]))
    else:
        _print_steps(steps, f"aws teardown ({pipeline})")


@aws_app.command()
def metrics(
    pipeline: Pipeline = "default",
    hours: Annotated[float, typer.Option(help="How far back.")] = 1.0,
    as_json: AsJson = False,
) -> None:
    """What the pipeline published to CloudWatch lately, read back with GetMetricData."""
    from ecomwatch.aws_resources import pipeline_figures

    resources = _resources()
    figures = _run("metrics", lambda: pipeline_figures(resources.client("cloudwatch"),
                                                        pipeline, hours))  # fmt: skip
    if as_json:
        print(json.dumps(figures))
        return
    table = Table(title=f"CloudWatch, namespace ecomwatch, pipeline={pipeline}, last {hours:g} h",
                  title_justify="left")  # fmt: skip
    for column in ("metric", "dimensions", "sum", "max"):
        table.add_column(column, justify="right" if column in ("sum", "max") else "left")
    for f in figures:
        dims = ", ".join(f"{k}={v}" for k, v in f["dimensions"].items())
        peak = "" if f["max"] is None else f"{f['max']:,.3g}"
        table.add_row(f["metric"], dims, f"{f['sum']:,.6g}", peak)
    print_table(out, table)
