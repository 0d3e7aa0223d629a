"""`ecomwatch incidents list|show|ack|resolve`: the incidents a detection wrote, read from its
log beside the alerts file (`--alerts`) or from the state store (`--store`); acknowledging or
resolving one is recorded beside them (`incident_actions`)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ecomwatch.console import error_line
from ecomwatch.detect.incident_actions import ACKNOWLEDGE, RESOLVE, ActionError
from ecomwatch.detect.incident_log import (
    IncidentBook,
    IncidentFile,
    IncidentStore,
    final_incident,
)
from ecomwatch.detect.rules import Severity

incidents_app = typer.Typer(
    help="Incidents: alerts correlated into campaigns (written beside the alerts file).",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)

AlertsOption = Annotated[
    Path | None,
    typer.Option(
        "--alerts", help="The alerts file of a detect or run; its <stem>.incidents.jsonl is read."
    ),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store", help="Or the state store a run wrote: a SQLite file or dynamodb://TABLE."
    ),
]
ByOption = Annotated[
    str | None, typer.Option("--by", help="Who acts (recorded; default: the login name).")
]
IncidentIdArgument = Annotated[
    str, typer.Argument(help="An incident id from `incidents list` (a merged one is followed).")
]
SHOWN_ALERTS = 15
JsonOption = Annotated[bool, typer.Option("--json", help="JSON Lines, one incident per line.")]


def open_book(alerts: Path | None, store: str | None) -> IncidentBook:
    """The incidents of --alerts or --store (one of them)."""
    if (alerts is None) == (store is None):
        err.print(error_line("give the incidents' source: --alerts FILE or --store STORE"))
        raise typer.Exit(2)
    if store is not None:
        from ecomwatch.cli.alert_outputs import open_store_to_read

        return IncidentStore(open_store_to_read(store, err), store)
    assert alerts is not None
    return IncidentFile(alerts)


def incident_log(book: IncidentBook) -> dict[str, dict[str, Any]]:
    """Incident id → its current record; a clear error when none were written."""
    latest = book.current()
    if latest is None:
        err.print(
            error_line(
                f"no incidents in {book.where}; run `ecomwatch detect` or `ecomwatch run` with "
                "--alerts FILE (and --store to keep them there) first"
            )
        )
        raise typer.Exit(2)
    return latest


@incidents_app.command("list")
def list_incidents(
    alerts: AlertsOption = None,
    store: StoreOption = None,
    state: Annotated[
        str | None, typer.Option(help="Only this state: open, acknowledged or resolved.")
    ] = None,
    severity: Annotated[
        str | None, typer.Option(help="Only incidents at this severity or above.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind (e.g. ddos, botnet).")] = None,
    ip: Annotated[str | None, typer.Option(help="Only incidents involving this IP.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The incidents, newest first (merged ones left out: see the incident they joined)."""
    floor = _severity(severity).rank if severity else 0
    rows = [
        r
        for r in incident_log(open_book(alerts, store)).values()
        if r["state"] != "merged"
        and (state is None or r["state"] == state)
        and Severity(r["severity"]).rank >= floor
        and (kind is None or r["kind"] == kind)
        and (ip is None or ip in r["ips"])
    ]
    rows.sort(key=lambda r: (r["last_seen"], r["incident_id"]), reverse=True)
    shown = rows[:limit]
    if as_json:
        for row in shown:
            print(json.dumps(row))
        return
    newest = f", the {limit} newest" if len(rows) > limit else ""
    out.print(f"{len(rows):,} incidents{newest} (ecomwatch incidents show ID)")
    for row in shown:  # one line each, like `git log --oneline`
        out.print(
            f"{row['incident_id']}  {row['severity']:8} {row['state']:9} {row['title']}"
            f"  ({row['alerts']:,} alert{'s' if row['alerts'] != 1 else ''})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@incidents_app.command("show")
def show_incident(
    incident_id: IncidentIdArgument,
    alerts: AlertsOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """One incident: its record and its alerts (an id that was merged shows where it went)."""
    book = open_book(alerts, store)
    incidents = incident_log(book)
    record = incidents.get(incident_id)
    if record is None:
        err.print(error_line(f"no incident {incident_id} in {book.where}"))
        raise typer.Exit(1)
    while record["state"] == "merged" and record["merged_into"] in incidents:
        out.print(f"{record['incident_id']} was merged into {record['merged_into']}")
        record = incidents[record["merged_into"]]
    members = _alerts_of(book, record["incident_id"], incidents)
    if as_json:
        print(json.dumps({**record, "alert_lines": members}))
        return
    shown_ips = record["ips"][:10]
    more = f" … ({record['ip_count']:,} in all)" if record["ip_count"] > len(shown_ips) else ""
    lines = [
        f"{record['title']}  ({record['incident_id']})",
        *(f"  {name}: {record[name]}" for name in ("kind", "severity", "state")),
        f"  seen: {record['first_seen']} → {record['last_seen']}",
        f"  rules: {', '.join(f'{k} ({v})' for k, v in record['rules'].items())}",
        f"  IPs: {', '.join(shown_ips)}{more}",
        f"  why: {record['explanation']}",
        f"  alerts ({len(members):,}, the lead first):",
    ]
    members.sort(key=lambda a: a["alert_id"] != record["lead_alert"])
    for alert in members[:SHOWN_ALERTS]:
        entity = _short(f"{alert['entity_type']} {alert['entity']}")
        lines.append(f"    {alert['severity']:8} {alert['rule']:22} {entity}")
    if len(members) > SHOWN_ALERTS:
        lines.append(f"    … {len(members) - SHOWN_ALERTS:,} more (--json lists them all)")
    for line in lines:  # user agents and URLs may hold brackets: no markup
        out.print(line, markup=False, highlight=False, soft_wrap=True)


@incidents_app.command("ack")
def acknowledge(
    incident_id: IncidentIdArgument,
    alerts: AlertsOption = None,
    store: StoreOption = None,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Acknowledge an open incident: someone is on it. It shows as open again if it escalates
    or flares up after resolving."""
    _act(incident_id, open_book(alerts, store), ACKNOWLEDGE, by, as_json)


@incidents_app.command("resolve")
def resolve(
    incident_id: IncidentIdArgument,
    alerts: AlertsOption = None,
    store: StoreOption = None,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resolve an incident now, before the detector finds it quiet; a new alert joining it
    opens it again."""
    _act(incident_id, open_book(alerts, store), RESOLVE, by, as_json)


def _act(incident_id: str, book: IncidentBook, action: str, by: str | None, as_json: bool) -> None:
    incident_log(book)  # a clear error when there are none
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        record = book.act(incident_id, action, by=by or getpass.getuser(), at=at)
    except KeyError:
        err.print(error_line(f"no incident {incident_id} in {book.where}"))
        raise typer.Exit(1) from None
    except ActionError as exc:
        err.print(error_line(exc))
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(record))
        return
    out.print(
        f"{record['incident_id']} {record['state']}: {record['title']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _alerts_of(
    book: IncidentBook, incident_id: str, incidents: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The alert lines of an incident (those of incidents merged into it included), the
    latest line of each alert."""
    latest: dict[str, dict[str, Any]] = {}
    for alert in book.alerts():
        if (
            alert.get("incident_id")
            and final_incident(alert["incident_id"], incidents) == incident_id
        ):
            latest[alert["alert_id"]] = alert
    return sorted(latest.values(), key=lambda a: (a["first_seen"], a["alert_id"]))


def _severity(name: str) -> Severity:
    try:
        return Severity(name)
    except ValueError:
        choices = ", ".join(s.value for s in Severity)
        raise typer.BadParameter(f"--severity must be one of {choices}, not {name!r}") from None
