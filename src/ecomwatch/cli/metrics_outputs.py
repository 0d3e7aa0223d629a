"""`--metrics cloudwatch|emf` for `serve` and `run`: the publishers the flag and `[metrics]`
ask for, started before the pipeline and closed after it with one summary line each."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Annotated

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console

from ecomwatch.config import Config
from ecomwatch.sinks.cloudwatch import MetricsPublisher

if TYPE_CHECKING:
    from ecomwatch.sinks.emf import EmbeddedMetrics

KINDS = ("cloudwatch", "emf")

MetricsOption = Annotated[
    str | None,
    typer.Option(
        "--metrics",
        help="Also publish the pipeline's metrics: cloudwatch (PutMetricData) or emf "
        "(Embedded Metric Format lines to the config's metrics.emf_path, standard output by "
        "default), every metrics.interval_s.",
    ),
]


@dataclass
class Publishing:
    """The publishers of one run, and the EMF file it opened (if any)."""

    publishers: dict[str, MetricsPublisher]
    emf_file: IO[str] | None = None


def metrics_kinds(flag: str | None, settings: Config) -> list[str]:
    """What to publish: the flag's kind and those `[metrics]` turns on. Raises ValueError for
    an unknown kind."""
    if flag is not None and flag not in KINDS:
        raise ValueError(f"--metrics takes cloudwatch or emf, not {flag!r}")
    kinds = {flag} - {None}
    if settings.metrics.cloudwatch:
        kinds.add("cloudwatch")
    if settings.metrics.emf:
        kinds.add("emf")
    return sorted(k for k in kinds if k is not None)


def open_metrics(
    kinds: list[str], registry: CollectorRegistry, settings: Config, console: Console
) -> Publishing:
    """Publishers for `kinds`, started."""
    m = settings.metrics
    publishing = Publishing({})
    for kind in kinds:
        if kind == "cloudwatch":
            import boto3

            from ecomwatch.aws_settings import region
            from ecomwatch.sinks.cloudwatch import PutMetricData

            session = boto3.session.Session()
            client = session.client("cloudwatch", region_name=region(session))
            sender: PutMetricData | EmbeddedMetrics = PutMetricData(client, m.namespace)
            where = "CloudWatch (PutMetricData)"
        else:
            from ecomwatch.sinks.emf import EmbeddedMetrics

            if m.emf_path == "-":
                stream: IO[str] = sys.stdout
            else:
                stream = publishing.emf_file = open(m.emf_path, "a", encoding="utf-8")  # noqa: SIM115
            sender = EmbeddedMetrics(stream, m.namespace)
            where = f"EMF lines to {'standard output' if m.emf_path == '-' else m.emf_path}"
        console.print(
            f"metrics: {where}, namespace {m.namespace}, pipeline={m.pipeline}, "
            f"every {m.interval_s:g} s"
        )
        publisher = MetricsPublisher(sender, registry, pipeline=m.pipeline, interval_s=m.interval_s)
        publisher.start()
        publishing.publishers[kind] = publisher
    return publishing


def close_metrics(publishing: Publishing | None, console: Console) -> None:
    """Publish the last interval and say what went out (and what did not)."""
    if publishing is None:
        return
    for kind, publisher in publishing.publishers.items():
        publisher.close()
        line = f"{kind}: {publisher.published:,} datum(s) published"
        if publisher.failed_calls or publisher.dropped:
            line += (
                f"; [yellow]{publisher.failed_calls} call(s) failed[/] ({publisher.error}), "
                f"{publisher.unsent:,} datum(s) not published"
            )
        console.print(line)
    if publishing.emf_file is not None:
        publishing.emf_file.close()
