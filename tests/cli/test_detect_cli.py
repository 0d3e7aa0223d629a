"""Detection from the command line: rule fixtures, sinks (store, webhook), explain, and the
report without flagged traffic — on the example fixture shipped in examples/rules."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from ecomwatch.detect.rule_tests import FixtureFile
from ecomwatch.detect.rules import default_rules
from tests.cli.test_cli import cli
from tests.sinks.test_webhook import Receiver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"
EVENTS = EXAMPLES / "scraper-slow-hoarder-office.csv"


def test_rules_test_passes_the_shipped_fixtures_and_reports_a_failing_case(tmp_path: Path):
    ok = cli("rules", "test", str(EXAMPLES / "fixtures.toml"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "pass" in ok.stdout
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(
        f'[[case]]\nname = "office flagged?"\nevents = "{EVENTS}"\n'
        '[[case.expect]]\nrule = "fast-scraper"\nentity = "198.51.100.20"\n'
        '[[case.forbid]]\nentity = "203.0.113.7"\n'
    )
    failed = cli("rules", "test", str(wrong))
    assert failed.returncode == 1
    assert "expected fast-scraper on 198.51.100.20" in failed.stdout
    assert "unexpected fast-scraper (high) on 203.0.113.7" in failed.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[case]]\nname = "x"\nevents = "e.csv"\nunknown = 1\n')
    assert cli("rules", "test", str(bad)).returncode == 2


def test_every_default_rule_has_a_must_alert_case_and_every_case_a_must_not():
    """The shipped fixtures (run by the test above) cover each default rule: an alert it must
    raise, in a case that also names what must stay quiet."""
    fixtures = tomllib.loads((EXAMPLES / "fixtures.toml").read_text())
    cases = FixtureFile.model_validate(fixtures).case
    expected = {want.rule for case in cases for want in case.expect}
    assert {rule.name for rule in default_rules()} - expected == set()
    assert all(case.forbid for case in cases), [case.name for case in cases]


def test_detect_feeds_a_flaky_webhook_and_the_store_and_explain_reads_both(tmp_path: Path):
    receiver = Receiver(failures=2)  # the first two POSTs get 503
    try:
        alerts, store = tmp_path / "alerts.jsonl", tmp_path / "alerts.db"
        result = cli(
            "detect", str(EVENTS), "--alerts", str(alerts), "--store", str(store),
            "--webhook", receiver.url,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    finally:
        receiver.stop()
    # One message when an incident opens and one when it resolves, not one per alert.
    incidents = cli("incidents", "list", "--alerts", str(alerts), "--json", "--severity", "medium")
    states = {
        record["incident_id"]: record["state"]
        for record in map(json.loads, incidents.stdout.splitlines())
    }
    assert sorted(states.values()) == ["open", "resolved", "resolved"]
    sent: dict[str, list[str]] = {}
    for message in receiver.received:  # incidents of one kind opening together share one
        together = message["type"] in ("incidents.opened", "incidents.resolved")
        for incident in message["incidents"] if together else [message["incident"]]:
            told_type = message["type"].replace("incidents.", "incident.")
            sent.setdefault(incident["incident_id"], []).append(told_type)
    assert set(sent) == set(states)
    for incident, types in sent.items():
        told = ["incident.opened"] + (
            ["incident.resolved"] if states[incident] == "resolved" else []
        )
        assert types == told
    assert receiver.attempts >= 3 and "incident message(s) delivered (" in result.stderr
    assert not (tmp_path / "alerts.jsonl.webhook-failures.jsonl").exists()

    for source in (["--alerts", str(alerts)], ["--store", str(store)]):
        shown = cli("explain", "203.0.113.7", *source, "--json")
        assert shown.returncode == 0, shown.stderr
        found = json.loads(shown.stdout)["alerts"]
        scraper = next(a for a in found if a["rule"] == "fast-scraper")
        assert scraper["terms"] and all(t["held"] for t in scraper["terms"])
        views = next(t for t in scraper["terms"] if t["term"].startswith("views >="))
        assert views["values"]["views"] >= 60
    nothing = cli("explain", "198.51.100.20", "--alerts", str(alerts), "--json")
    assert json.loads(nothing.stdout)["alerts"] == []


def test_report_can_leave_out_flagged_traffic(tmp_path: Path):
    lake, alerts = tmp_path / "lake", tmp_path / "alerts.jsonl"
    assert cli("run", str(EVENTS), "--lake", str(lake), "--alerts", str(alerts)).returncode == 0
    everything = json.loads(cli("report", "--lake", str(lake), "--format", "json").stdout)
    clean_run = cli(
        "report", "--lake", str(lake), "--format", "json", "--exclude-bots",
        "--alerts", str(alerts),
    )  # fmt: skip
    assert clean_run.returncode == 0, clean_run.stderr
    clean = json.loads(clean_run.stdout)
    # The scraper (400 views), the slow scraper (105) and the hoarder's session (40 events).
    assert clean["excluded_flagged_events"] == 545
    assert clean["totals"]["events"] == everything["totals"]["events"] - 545
    assert clean["totals"]["by_type"]["purchase"] == everything["totals"]["by_type"]["purchase"]
    missing = cli("report", "--lake", str(lake), "--exclude-bots")
    assert missing.returncode == 2 and "--alerts FILE or --store FILE" in missing.stderr


def test_evaluate_scores_the_alerts_of_a_run_made_elsewhere(tmp_path: Path):
    """`evaluate --alerts` scores a live run's alert file (here `detect`'s) against the labels,
    IP by IP, instead of running the detector itself."""
    events, alerts = tmp_path / "shop.csv", tmp_path / "alerts.jsonl"
    made = cli("simulate", "--events", "20000", "--days", "0.05", "--attacks", "--seed", "4",
               "--out", str(events))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert cli("detect", str(events), "--alerts", str(alerts)).returncode == 0
    scored = cli("evaluate", str(events), "--alerts", str(alerts), "--json")
    assert scored.returncode == 0, scored.stderr
    ours = json.loads(scored.stdout)["ecomwatch"]
    labels = json.loads((tmp_path / "shop.labels.json").read_text())["ips"]
    flagged: set[str] = set()
    for line in alerts.read_text().splitlines():
        row = json.loads(line)
        if row["severity"] in ("medium", "high", "critical"):
            flagged.update(row["ips"])
    assert ours["flagged"] == len(flagged) > 0
    by_kind: dict[str, int] = {}
    for ip in flagged:
        kind = labels.get(ip, "normal")
        by_kind[kind] = by_kind.get(kind, 0) + 1
    assert {k: v["flagged"] for k, v in ours["per_kind"].items() if v["flagged"]} == by_kind
    missing = cli("evaluate", str(events), "--alerts", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and "no alerts file" in missing.stderr
