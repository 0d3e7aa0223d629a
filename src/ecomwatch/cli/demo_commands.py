"""`ecomwatch simulate` (synthetic shop traffic) and `ecomwatch demo`: both halves of the
product on a simulated shop under attack, in one command — the business report, the alerts
with one explained, what the bots do to the numbers, and the score against the scenario's
labels; `demo --live` serves the dashboard while an attack scenario is replayed into it."""

from __future__ import annotations

import json
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ecomwatch.cli.alert_outputs import latest_alerts
from ecomwatch.cli.run_summary import parse_time, print_run_summary
from ecomwatch.console import print_table

out = Console()
err = Console(stderr=True, soft_wrap=True)
LIVE_URL = "http://127.0.0.1:8080/"
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


class Scenario(StrEnum):
    CLASSIC = "classic"
    EVASIVE = "evasive"


class _Quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def simulate(
    events: Annotated[int, typer.Option("--events", min=1, help="Number of events.")],
    output: Annotated[
        Path, typer.Option("--out", help="Output file: .csv, .csv.gz, .jsonl or .parquet.")
    ],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 0,
    days: Annotated[
        float | None,
        typer.Option(help="Days of traffic (default: events / 2.25 million, at least 1)."),
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
    scenario: Annotated[
        Scenario,
        typer.Option(
            help="With --attacks: classic (one telltale per attacker) or evasive (attackers "
            "who rotate identities, spread out or look human, and traps that look like "
            "attacks: a carrier NAT, a marketing spike, crawlers, uptime monitors).",
        ),
    ] = Scenario.CLASSIC,
) -> None:
    """Write realistic synthetic shop traffic in REES46 format, with ip and user_agent."""
    from ecomwatch.simulate.traffic import TrafficSpec, generate
    from ecomwatch.simulate.writers import write_traffic

    begin = parse_time(start, "--start")
    assert begin is not None
    spec = TrafficSpec(events=events, seed=seed, start=begin, days=days)
    with (
        err.status(f"simulating {events:,} events", spinner="dots") if err.is_terminal else _Quiet()
    ):
        if attacks:
            rows, labels_file = _write_attack_scenario(spec, output, scenario)
            out.print(f"labels → {labels_file}")
        else:
            rows = write_traffic(generate(spec), output)
    out.print(f"wrote {rows:,} events to {output}")


def _write_attack_scenario(spec: Any, output: Path, scenario: Scenario) -> tuple[int, Path]:
    from ecomwatch.simulate.attacks import (
        AttackScenario,
        in_chunks,
        labels_path_for,
        write_labels,
    )
    from ecomwatch.simulate.evasive import EvasiveScenario
    from ecomwatch.simulate.writers import write_traffic

    builder = EvasiveScenario(spec) if scenario is Scenario.EVASIVE else AttackScenario(spec)
    table, labels = builder.build()
    rows = write_traffic(in_chunks(table), output)
    write_labels(labels, labels_path_for(output))
    return rows, labels_path_for(output)


def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo writes its files.")
    ] = Path("demo-output"),
    events: Annotated[int, typer.Option(min=20_000, help="Events to simulate.")] = 200_000,
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
    """A day of a shop under attack, simulated, ingested with detection, reported and explained:
    the whole pipeline in one go."""
    if live:
        from ecomwatch.cli.serve_commands import live_demo

        live_demo(directory, port)
        return
    from ecomwatch.analytics.render import html_report, print_report
    from ecomwatch.analytics.report import Flagged, lake_report
    from ecomwatch.config import Config
    from ecomwatch.detect.rules import load_rules
    from ecomwatch.ingest import ingest
    from ecomwatch.lake.open import open_lake
    from ecomwatch.simulate.attacks import labels_path_for
    from ecomwatch.simulate.traffic import TrafficSpec
    from ecomwatch.sinks.jsonl import read_json_lines

    directory.mkdir(parents=True, exist_ok=True)
    sample, lake, alerts = directory / "sample.csv", directory / "lake", directory / "alerts.jsonl"
    labels_file = labels_path_for(sample)
    if sample.exists() and labels_file.exists():
        out.print(f"[bold]1/5[/] using the existing sample {sample}")
    else:
        out.print(f"[bold]1/5[/] simulating a shop under attack: {events:,} events → {sample}")
        _write_attack_scenario(TrafficSpec(events=events, seed=7), sample, Scenario.CLASSIC)
    out.print(f"[bold]2/5[/] ingesting with detection → lake {lake}, alerts {alerts}")
    summary = ingest([sample], lake, config=Config(), alerts=alerts, rules=load_rules([]))
    print_run_summary(summary, lake, out)

    out.print("\n[bold]3/5[/] the business: the report")
    table = open_lake(lake)
    data = lake_report(table)
    print_report(data, out)

    raised = latest_alerts(read_json_lines(alerts))
    out.print(f"\n[bold]4/5[/] the security side: {len(raised):,} alerts")
    _print_alerts(raised)

    out.print("\n[bold]5/5[/] what the bots do to the numbers")
    clean = lake_report(table, exclude=Flagged.from_alerts(raised))
    _print_bots_in_numbers(data, clean)
    _print_score(raised, json.loads(labels_file.read_text()))

    page, report_json = directory / "report.html", directory / "report.json"
    page.write_text(html_report(data, title="ecomwatch demo report"))
    report_json.write_text(json.dumps(data, default=str, indent=2))
    out.print(
        f"\noutputs: lake {lake}, alerts {alerts}, report {page} (open in a browser), "
        f"JSON {report_json}\n"
        f"next: `ecomwatch explain IP --alerts {alerts}` for any entity above; "
        f"`make live` serves the live dashboard at {LIVE_URL} while attacks are replayed into it"
    )


def _print_alerts(raised: list[dict[str, Any]]) -> None:
    from ecomwatch.cli.explain_command import explanations, print_explanations
    from ecomwatch.detect.rules import load_rules

    by_rule: dict[str, Counter[str]] = {}
    ips: dict[str, set[str]] = {}
    for alert in raised:
        by_rule.setdefault(alert["rule"], Counter())[alert["severity"]] += 1
        ips.setdefault(alert["rule"], set()).update(alert["ips"])
    table = Table("rule", title="Alerts by rule", title_justify="left")
    for column in (*SEVERITY_ORDER, "IPs"):
        table.add_column(column, justify="right")
    for rule, counts in sorted(by_rule.items(), key=lambda item: -item[1].total()):
        table.add_row(rule, *(f"{counts[s]:,}" for s in SEVERITY_ORDER), f"{len(ips[rule]):,}")
    print_table(out, table)
    if not raised:
        return
    rank = {severity: n for n, severity in enumerate(SEVERITY_ORDER)}
    top = min(raised, key=lambda a: (rank.get(a["severity"], 99), -a["count"], a["alert_id"]))
    out.print(f"\nthe top alert explained (`ecomwatch explain {top['entity']}`):")
    print_explanations(explanations([top], load_rules([])), out)


def _print_bots_in_numbers(data: dict[str, Any], clean: dict[str, Any]) -> None:
    table = Table(
        "", "all traffic", "flagged traffic excluded", title="Bots in the numbers",
        title_justify="left",
    )  # fmt: skip
    rows = [
        ("events", data["totals"]["events"], clean["totals"]["events"]),
        ("sessions", data["totals"]["sessions"], clean["totals"]["sessions"]),
        ("view → cart", data["funnel"]["view_to_cart"], clean["funnel"]["view_to_cart"]),
        (
            "view → purchase",
            data["funnel"]["view_to_purchase"],
            clean["funnel"]["view_to_purchase"],
        ),
        ("cart abandonment", data["cart_abandonment"]["rate"], clean["cart_abandonment"]["rate"]),
    ]
    for name, raw, without in rows:
        table.add_row(name, _figure(raw), _figure(without))
    print_table(out, table)


def _figure(value: Any) -> str:
    if isinstance(value, float) and value <= 1:
        return f"{value:.2%}"
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def _print_score(raised: list[dict[str, Any]], labels: dict[str, Any]) -> None:
    from ecomwatch.detect.evaluate import flagged_by_alert_rows, score

    result = score("ecomwatch", flagged_by_alert_rows(raised), labels)
    table = Table(
        "kind", title=f"Against the scenario's labels: {result.flagged:,} IPs flagged, "
        f"precision {result.precision:.3f}", title_justify="left",
    )  # fmt: skip
    for column in ("IPs", "flagged", "recall"):
        table.add_column(column, justify="right")
    traps = set(labels["kinds"]["legitimate"])
    for kind, entry in result.per_kind.items():
        recall = entry.get("recall")
        table.add_row(
            f"{kind} (trap: not an attack)" if kind in traps else kind,
            f"{entry['ips']:,}" if "ips" in entry else "",
            f"{entry['flagged']:,}",
            "" if recall is None else f"{recall:.2f}",
        )
    print_table(out, table)
