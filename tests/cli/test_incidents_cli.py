"""`detect` writes the incidents log beside the alerts; `incidents list|show` read it: every
alert in exactly one incident, filters, JSON, merged ids, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import cli


@pytest.fixture(scope="module")
def detected(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("incidents")
    events = folder / "attacks.csv"
    simulated = cli(
        "simulate", "--events", "30000", "--days", "0.0625", "--seed", "11", "--attacks",
        "--out", str(events),
    )  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    alerts = folder / "alerts.jsonl"
    result = cli("detect", str(events), "--alerts", str(alerts))
    assert result.returncode == 0, result.stderr
    assert "incidents (" in result.stdout and "alerts.incidents.jsonl" in result.stdout
    return alerts


def listed(alerts: Path, *options: str) -> list[dict]:
    result = cli("incidents", "list", "--alerts", str(alerts), "--json", *options)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_alert_is_in_exactly_one_listed_incident(detected: Path):
    alerts = [json.loads(line) for line in detected.read_text().splitlines()]
    incidents = listed(detected, "--limit", "1000")
    assert 5 <= len(incidents) <= len(alerts) / 10  # campaigns, not one line per alert
    assert sum(i["alerts"] for i in incidents) == len({a["alert_id"] for a in alerts})
    flood = [i for i in incidents if i["kind"] == "ddos"]
    assert len(flood) == 1 and flood[0]["ip_count"] >= 100
    assert flood[0]["title"].startswith(f"Flood: {flood[0]['ip_count']:,} IPs, ")


def test_filters_and_the_table(detected: Path):
    high = listed(detected, "--severity", "high", "--limit", "1000")
    assert high and all(i["severity"] in ("high", "critical") for i in high)
    assert len(listed(detected, "--limit", "2")) == 2
    some_ip = high[0]["ips"][0]
    assert all(some_ip in i["ips"] for i in listed(detected, "--ip", some_ip))
    table = cli("incidents", "list", "--alerts", str(detected))
    assert table.returncode == 0 and "incidents" in table.stdout
    wrong = cli("incidents", "list", "--alerts", str(detected), "--severity", "urgent")
    assert wrong.returncode == 2 and "--severity must be one of" in wrong.stderr


def test_show_lists_the_incident_alerts_and_follows_merges(detected: Path):
    flood = next(i for i in listed(detected, "--limit", "1000") if i["kind"] == "ddos")
    shown = cli("incidents", "show", flood["incident_id"], "--alerts", str(detected), "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert len(record["alert_lines"]) == flood["alerts"]
    assert {a["rule"] for a in record["alert_lines"]} == set(flood["rules"])
    log = [json.loads(line) for line in detected.with_name("alerts.incidents.jsonl").open()]
    merged = [r for r in log if r["state"] == "merged"]
    if merged:  # an id that was absorbed leads to the incident that absorbed it
        followed = cli("incidents", "show", merged[-1]["incident_id"], "--alerts", str(detected))
        assert followed.returncode == 0 and "was merged into" in followed.stdout
    text = cli("incidents", "show", flood["incident_id"], "--alerts", str(detected))
    assert flood["title"] in text.stdout and "why:" in text.stdout
    missing = cli("incidents", "show", "nope", "--alerts", str(detected))
    assert missing.returncode == 1 and "no incident nope" in missing.stderr


def test_explain_names_the_incident_of_each_alert(detected: Path):
    flood = next(i for i in listed(detected, "--limit", "1000") if i["kind"] == "ddos")
    member = flood["ips"][0]
    shown = cli("explain", member, "--alerts", str(detected), "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)["alerts"]
    assert found and all(a["incident"]["incident_id"] == flood["incident_id"] for a in found)
    text = cli("explain", member, "--alerts", str(detected))
    assert f"incident: {flood['title']}" in text.stdout.replace("\n", " ")


def test_a_missing_log_says_what_to_run(tmp_path: Path):
    result = cli("incidents", "list", "--alerts", str(tmp_path / "alerts.jsonl"))
    assert result.returncode == 2 and "run `ecomwatch detect`" in result.stderr


def test_ack_and_resolve_are_recorded_beside_the_log(detected: Path, tmp_path: Path):
    # The events up to 01:10, while the flood is on: its incident is still open at the end.
    lines = (detected.parent / "attacks.csv").read_text().splitlines()
    head = [lines[0], *(line for line in lines[1:] if line < "2019-11-01 01:10")]
    (tmp_path / "head.csv").write_text("\n".join(head) + "\n")
    alerts = tmp_path / "alerts.jsonl"
    assert cli("detect", str(tmp_path / "head.csv"), "--alerts", str(alerts)).returncode == 0
    log_before = (tmp_path / "alerts.incidents.jsonl").read_bytes()
    flood = next(i for i in listed(alerts, "--state", "open") if i["kind"] == "ddos")
    ident = flood["incident_id"]
    acked = cli("incidents", "ack", ident, "--alerts", str(alerts), "--by", "dana", "--json")
    assert acked.returncode == 0, acked.stderr
    assert json.loads(acked.stdout)["state"] == "acknowledged"
    assert [i["incident_id"] for i in listed(alerts, "--state", "acknowledged")] == [ident]
    again = cli("incidents", "ack", ident, "--alerts", str(alerts))
    assert again.returncode == 1 and "already acknowledged" in again.stderr
    resolved = cli("incidents", "resolve", ident, "--alerts", str(alerts), "--by", "dana")
    assert resolved.returncode == 0 and f"{ident} resolved" in resolved.stdout
    shown = cli("incidents", "show", ident, "--alerts", str(alerts), "--json")
    record = json.loads(shown.stdout)
    assert record["state"] == "resolved" and record["resolved_by"] == "dana"
    # The detector's own log is untouched: the actions have a file of their own.
    assert (tmp_path / "alerts.incidents.jsonl").read_bytes() == log_before
    assert len((tmp_path / "alerts.incident-actions.jsonl").read_text().splitlines()) == 2
    unknown = cli("incidents", "resolve", "0000", "--alerts", str(alerts))
    assert unknown.returncode == 1 and "no incident 0000" in unknown.stderr
