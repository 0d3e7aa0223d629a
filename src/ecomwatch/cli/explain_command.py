"""`ecomwatch explain ENTITY`: the alerts about an entity and the evidence behind each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ecomwatch.cli.detect_commands import RulesOption, load_rules_or_exit
from ecomwatch.console import error_line, print_table
from ecomwatch.detect.explain import condition_terms, matches
from ecomwatch.sinks.jsonl import read_json_lines

if TYPE_CHECKING:
    from ecomwatch.detect.rules import Rule

out = Console()
err = Console(stderr=True, soft_wrap=True)


def explain(
    entity: Annotated[str, typer.Argument(help="An IP, /24 subnet, user, session or user agent.")],
    alerts: Annotated[Path | None, typer.Option("--alerts", help="JSON Lines alerts file.")] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="The alert store: a file or dynamodb://TABLE.")
    ] = None,
    rules: RulesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show why an entity was flagged: each alert's features, values and thresholds."""
    if (alerts is None) == (store is None):
        err.print(error_line("give one of --alerts FILE or --store FILE"))
        raise typer.Exit(2)
    found = _load(alerts, store, entity)
    report = explanations(found, load_rules_or_exit(rules))
    if alerts is not None:
        _add_incidents(report, found, alerts)
    if as_json:
        print(json.dumps({"entity": entity, "alerts": report}))
        return
    if not report:
        out.print(f"no alerts about {escape(entity)}")
        raise typer.Exit(0)
    print_explanations(report, out)


def explanations(found: list[dict[str, Any]], rules: list[Rule]) -> list[dict[str, Any]]:
    """Each alert with its condition's terms: the values behind it, and whether each held."""
    by_name = {r.name: r for r in rules}
    report = []
    for alert in found:
        rule = by_name.get(alert["rule"])
        condition = (
            rule.spec.members.condition
            if rule and rule.spec.members and alert.get("group")
            else (rule.spec.condition if rule else None)
        )
        terms = condition_terms(condition, alert["evidence"]) if condition else []
        report.append(
            {
                **{k: alert.get(k) for k in ("alert_id", "rule", "severity", "entity_type")},
                "entity": alert["entity"],
                "first_seen": alert["first_seen"],
                "last_seen": alert["last_seen"],
                "explanation": alert["explanation"],
                "terms": [{"term": t.text, "values": t.values, "held": t.held} for t in terms],
            }
        )
    return report


def print_explanations(report: list[dict[str, Any]], console: Console) -> None:
    for item in report:
        console.rule(
            f"{escape(item['rule'])} · {item['severity']} · {item['entity_type']} "
            f"{escape(item['entity'])}"
        )
        console.print(f"{item['first_seen']} → {item['last_seen']}  ({item['alert_id']})")
        console.print(escape(item["explanation"]))
        if item.get("incident"):
            incident = item["incident"]
            console.print(
                f"incident: {escape(incident['title'])} "
                f"({incident['incident_id']}, {incident['state']})"
            )
        table = Table("condition", "values", "held")
        for term in item["terms"]:
            values = ", ".join(f"{k}={v}" for k, v in term["values"].items())
            mark = {True: "[green]yes[/]", False: "[red]no[/]", None: "?"}[term["held"]]
            table.add_row(escape(term["term"]), escape(values), mark)
        print_table(console, table)


def _add_incidents(report: list[dict[str, Any]], found: list[dict[str, Any]], alerts: Path) -> None:
    """Each alert's incident (after merges), from the incidents log beside the alerts file."""
    from ecomwatch.detect.incident_log import final_incident, read_incident_log

    latest = read_incident_log(alerts)
    if latest is None:
        return
    for item, alert in zip(report, found, strict=True):
        record = latest.get(final_incident(alert.get("incident_id") or "", latest))
        if record is not None:
            item["incident"] = {k: record.get(k) for k in ("incident_id", "title", "state")}


def _load(alerts: Path | None, store: str | None, entity: str) -> list[dict[str, Any]]:
    if alerts is not None:
        if not alerts.exists():
            err.print(error_line(f"{alerts} does not exist"))
            raise typer.Exit(2)
        from ecomwatch.cli.alert_outputs import latest_alerts

        # An escalation repeats the id: its last version stands.
        return latest_alerts([row for row in read_json_lines(alerts) if matches(row, entity)])
    assert store is not None
    from ecomwatch.cli.alert_outputs import open_store_to_read

    database = open_store_to_read(store, err)
    try:
        return database.alerts_about(entity)
    finally:
        database.close()
