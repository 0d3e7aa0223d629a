"""`ecomwatch detect` and `ecomwatch rules list|validate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ecomwatch.detect.features import FEATURES
from ecomwatch.detect.rules import RuleError, load_rules

rules_app = typer.Typer(help="List and validate detection rules.", no_args_is_help=True)
out = Console()
err = Console(stderr=True, soft_wrap=True)

RulesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules", help="Rule file (TOML) adding to or overriding the defaults; repeatable."
    ),
]


def load_rules_or_exit(paths: list[Path] | None):  # type: ignore[no-untyped-def]
    try:
        return load_rules(paths or [])
    except RuleError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


@rules_app.command("list")
def list_rules(
    rules: RulesOption = None,
    features: Annotated[
        bool, typer.Option("--features", help="List the window features instead.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The rules in force (defaults plus --rules files), or the features conditions may use."""
    if features:
        rows = [{"feature": n, "description": d} for n, (_, d) in FEATURES.items()]
    else:
        rows = [
            {
                "rule": r.name,
                "key": r.spec.key.value,
                "window": r.spec.window,
                "severity": r.spec.severity.value,
                "condition": r.spec.condition,
                "sql": r.condition_sql,
            }
            for r in load_rules_or_exit(rules)
        ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table()
    for column in rows[0] if rows else []:
        if column != "sql":
            table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for k, v in row.items() if k != "sql"))
    out.print(table)


@rules_app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Rule files to check.")]) -> None:
    """Check rule files; exit 2 with the file, rule and field of the first problem."""
    loaded = load_rules_or_exit(files)
    out.print(f"{len(files)} file(s) valid; {len(loaded)} rules in force")
