"""`ecomwatch detect` and `ecomwatch rules list|validate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ecomwatch.console import error_line, print_table
from ecomwatch.detect.features import FEATURES
from ecomwatch.detect.rules import RuleError, load_rules

if TYPE_CHECKING:
    import pyarrow as pa

    from ecomwatch.detect.evaluate import Score

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
        err.print(error_line(exc))
        raise typer.Exit(2) from exc


@rules_app.command("list")
def list_rules(
    rules: RulesOption = None,
    features: Annotated[
        bool, typer.Option("--features", help="List the window features instead.")
    ] = False,
    engines: Annotated[
        bool,
        typer.Option(
            "--engines", help="Say for each rule whether it compiles for Flink, or why not."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The rules in force (defaults plus --rules files), or the features conditions may use."""
    if engines:
        from ecomwatch.flink.compiler import unsupported

        rows = []
        for rule in load_rules_or_exit(rules):
            reason = unsupported(rule)
            rows.append(
                {
                    "rule": rule.name,
                    "embedded": "yes",
                    "flink": "yes" if reason is None else "no",
                    "why not": reason or "",
                }
            )
    elif features:
        rows = [{"feature": n, "description": d} for n, (_, d) in FEATURES.items()]
    else:
        rows = [
            {
                "rule": r.name,
                "key": r.spec.key.value,
                "window": r.spec.window,
                "severity": r.spec.severity.value,
                "condition": r.spec.condition,
                "members": (
                    f"{r.spec.members.key.value} where {r.spec.members.condition} "
                    f"(at least {r.spec.members.min})"
                    if r.spec.members
                    else ""
                ),
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
    print_table(out, table)


@rules_app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Rule files to check.")]) -> None:
    """Check rule files; exit 2 with the file, rule and field of the first problem."""
    loaded = load_rules_or_exit(files)
    out.print(f"{len(files)} file(s) valid; {len(loaded)} rules in force")


def evaluate(
    inputs: Annotated[list[Path], typer.Argument(help="Events written by simulate --attacks.")],
    labels: Annotated[
        Path | None,
        typer.Option(help="Labels file (default: <input>.labels.json beside the first input)."),
    ] = None,
    rules: RulesOption = None,
    waf_limit: Annotated[
        int, typer.Option(help="The baseline WAF rule's limit: requests per IP per 5 minutes.")
    ] = 100,
    batch_seconds: Annotated[
        float, typer.Option(help="Micro-batch length in event-time seconds, as a live service.")
    ] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    alerts: Annotated[
        Path | None,
        typer.Option(
            help="Score the alerts a live run wrote (serve's alerts file, after `replay` of "
            "the inputs) instead of running the detector here.",
        ),
    ] = None,
) -> None:
    """Score detection on a labelled scenario, side by side with an AWS-WAF-style rate rule."""
    from ecomwatch.config import Config
    from ecomwatch.detect.evaluate import evaluate as run_evaluation
    from ecomwatch.detect.evaluate import read_all
    from ecomwatch.ingest import open_inputs
    from ecomwatch.simulate.attacks import labels_path_for

    labels_file = labels or labels_path_for(inputs[0])
    if not labels_file.exists():
        err.print(error_line(f"no labels file {labels_file}; pass --labels FILE"))
        raise typer.Exit(2)
    truth = json.loads(labels_file.read_text())
    loaded = load_rules_or_exit(rules)
    if alerts is not None and not alerts.exists():
        err.print(error_line(f"no alerts file {alerts}"))
        raise typer.Exit(2)
    sources, errors = open_inputs(inputs, Config())
    if errors:
        err.print(error_line(errors[0]))
        raise typer.Exit(1)
    events = read_all(sources)
    if alerts is not None:
        ours, waf = _score_alert_file(alerts, events, truth, waf_limit)
    else:
        ours, waf, _ = run_evaluation(
            events, truth, loaded, waf_limit=waf_limit, batch_s=batch_seconds
        )
    if as_json:
        print(json.dumps({"ecomwatch": ours.to_json(), "baseline": waf.to_json()}))
        return
    print_table(out, score_table(ours, waf))
    if ours.incidents is not None:
        out.print(ours.incidents.line())


def _score_alert_file(
    path: Path, events: pa.Table, truth: dict[str, Any], waf_limit: int
) -> tuple[Score, Score]:
    """(ecomwatch's score, the WAF rule's) with ecomwatch's from the alerts in `path`."""
    from ecomwatch.cli.alert_outputs import latest_alerts, read_alerts
    from ecomwatch.detect.evaluate import score_alert_rows

    return score_alert_rows(latest_alerts(read_alerts(path)), events, truth, waf_limit)


def score_table(ours, waf) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title="detection vs WAF rate rule (IPs flagged at medium or above)")
    table.add_column("kind")
    table.add_column("IPs", justify="right")
    for name in (ours.name, waf.name):
        table.add_column(f"{name} flagged", justify="right")
        table.add_column("recall", justify="right")
    for kind, entry in ours.per_kind.items():
        other = waf.per_kind[kind]
        table.add_row(
            kind,
            str(entry.get("ips", "")),
            str(entry["flagged"]),
            _fmt(entry.get("recall")),
            str(other["flagged"]),
            _fmt(other.get("recall")),
        )
    for label, a, b in (
        ("precision", _fmt(ours.precision), _fmt(waf.precision)),
        ("false positives", str(ours.false_positives), str(waf.false_positives)),
        ("flood delay (s)", _fmt(ours.flood_delay_s), _fmt(waf.flood_delay_s)),
        (
            "high global alarms in flash sale",
            str(ours.high_global_alarms_in_flash_sale),
            str(waf.high_global_alarms_in_flash_sale),
        ),
    ):
        table.add_row(label, "", a, "", b, "")
    if ours.high_global_alarms_in_marketing_spike is not None:
        table.add_row(
            "high global alarms in marketing spike", "",
            str(ours.high_global_alarms_in_marketing_spike), "",
            str(waf.high_global_alarms_in_marketing_spike), "",
        )  # fmt: skip
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


@rules_app.command("test")
def test_rules(
    fixtures: Annotated[list[Path], typer.Argument(help="Rule fixture files (TOML).")],
) -> None:
    """Replay rule fixtures: each case's events must raise its expected alerts and no others
    it forbids. Exit 1 when a case fails, 2 when a file is invalid."""
    from ecomwatch.config import Config
    from ecomwatch.detect.rule_tests import run_fixture_file

    failed = 0
    for path in fixtures:
        try:
            results = run_fixture_file(path, Config())
        except RuleError as exc:
            err.print(error_line(exc))
            raise typer.Exit(2) from exc
        for result in results:
            mark = "[green]pass[/]" if result.passed else "[red]FAIL[/]"
            out.print(f"{mark} {path.name}: {result.name}")
            for problem in result.problems:
                out.print(f"     {problem}", markup=False)
            failed += not result.passed
    if failed:
        raise typer.Exit(1)
