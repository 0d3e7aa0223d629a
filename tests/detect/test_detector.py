"""Per-rule fixtures replayed in event time: injected misbehaviour gets its alert, normal
traffic none; alerts keep their ids across batch sizes; the CLI writes them."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecomwatch.config import IncidentsConfig, load_config
from ecomwatch.detect.detector import Detector, _from_ipc, _to_ipc
from ecomwatch.detect.rules import load_rules
from ecomwatch.detect.run import NoCheckpoints, detect
from ecomwatch.detect.window_sql import counts_alone
from ecomwatch.engine.pipeline import Pipeline
from ecomwatch.engine.watermark import Watermark
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic
from ecomwatch.testing import MemorySource, rees46_csv

START = datetime(2019, 11, 1, 10, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def event(
    seconds: float, kind: str, product: int, user: int, session: str, ip: str, agent: str
) -> dict:
    return {
        "event_time": (START + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "event_type": kind,
        "product_id": product,
        "category_id": 2053013555631882655,
        "price": "9.99",
        "user_id": user,
        "user_session": session,
        "ip": ip,
        "user_agent": agent,
    }


INJECTED = {
    # rule → (entity, its events)
    "fast-scraper": (
        "203.0.113.7",
        [
            event(i * 0.6, "view", 10**6 + i, 9, "s-scrape", "203.0.113.7", CHROME)
            for i in range(400)
        ],
    ),
    "cart-abuse": (
        "s-hoard",
        [
            event(
                10 * i,
                "cart" if i % 2 == 0 else "remove_from_cart",
                5,
                8,
                "s-hoard",
                "198.51.100.9",
                CHROME,
            )
            for i in range(40)
        ],
    ),
    "search-engine-crawler": (
        "66.249.66.1",
        [event(20 * i, "view", 7 + i, 7, "s-gb", "66.249.66.1", GOOGLEBOT) for i in range(60)],
    ),
    "declared-bot": (
        "192.0.2.50",
        [
            event(
                3 * i, "view", 70 + i, 6, f"s-py{i // 30}", "192.0.2.50", "python-requests/2.31.0"
            )
            for i in range(100)
        ],
    ),
}


@pytest.fixture(scope="module")
def traffic(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("detect") / "normal.csv"
    write_traffic(generate(TrafficSpec(events=60_000, seed=3, days=1)), path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    injected = [e for _, events in INJECTED.values() for e in events]
    return rees46_csv(sorted(rows + injected, key=lambda r: r["event_time"]))


# Rules judged on every batch, so that batch sizes really differ between runs.
EVERY_BATCH = load_config(environ={"ECOMWATCH_DETECT__JUDGE_ROWS": "0"})


def run(text: str, chunk_bytes: int):
    summary, alerts = detect(
        [MemorySource(text, chunk_bytes=chunk_bytes)], load_rules(), config=EVERY_BATCH
    )
    return summary, alerts


def test_each_injected_behaviour_gets_its_alert_and_normal_traffic_none(traffic):
    summary, alerts = run(traffic, 1 << 20)
    assert summary.rejected == 0
    got = {(a.rule, a.entity) for a in alerts}
    assert got == {(rule, entity) for rule, (entity, _) in INJECTED.items()}
    by_rule = {a.rule: a for a in alerts}
    assert by_rule["search-engine-crawler"].severity.value == "info"  # labelled, not an attack
    scraper = by_rule["fast-scraper"]
    assert scraper.evidence["distinct_products"] >= 40 and scraper.evidence["purchases"] == 0
    assert "203.0.113.7" in scraper.explanation and "fast-scraper" in scraper.explanation


def test_an_alert_reaches_the_listeners_before_the_rules_raised_after_its_own(monkeypatch):
    """A live service shows an alert as soon as its rule raised it, not after a whole round
    (group rules run more queries to find their members)."""
    entity, rows = INJECTED["fast-scraper"]
    heard: list[dict] = []
    rounds: list[list[tuple[str, int]]] = []  # per judging round: (rule, alerts heard before it)
    judge, raise_ = Detector._judge, Detector._raise

    def judging(self, **kwargs):
        rounds.append([])
        return judge(self, **kwargs)

    def raising(self, rule, matched, members):
        rounds[-1].append((rule.name, len(heard)))
        return raise_(self, rule, matched, members)

    monkeypatch.setattr(Detector, "_judge", judging)
    monkeypatch.setattr(Detector, "_raise", raising)
    # A busy user agent of one subnet that never shops matches the group conditions of the
    # botnet rules (its IPs are too few events each to be members): rules raised after
    # fast-scraper's in the same round.
    busy = [event(i, "view", i, i, f"s{i}", f"198.51.100.{i % 10}", "Busy/1.0") for i in range(40)]
    text = rees46_csv(sorted(rows + busy, key=lambda r: r["event_time"]))
    _, alerts = detect(
        [MemorySource(text)], load_rules(), config=EVERY_BATCH, alert_listeners=[heard.extend]
    )
    assert (
        [(a["rule"], a["entity"]) for a in heard]
        == [("fast-scraper", entity)]
        == [(a.rule, a.entity) for a in alerts]
    )
    # The round that raised it: the rules raised after fast-scraper already had it.
    raising_round = next(r for r in rounds if r and r[0] == ("fast-scraper", 0))
    assert len(raising_round) > 1, "no other rule raised in fast-scraper's round"
    assert all(seen == 1 for _, seen in raising_round[1:])


def test_a_scrapers_alert_is_heard_before_the_group_rules_are_judged(monkeypatch):
    """A round judges the rules about one IP, session or user first: their alerts go out
    before the group and shop-wide rules' queries (members, baselines) run."""
    entity, rows = INJECTED["fast-scraper"]
    heard: list[dict] = []
    parts: list[tuple[set[str], int]] = []  # (key kinds judged, alerts heard by then)
    evaluate_part = Detector._evaluate_part

    def judging_part(self, due):
        parts.append(({d.rule.spec.key.value for d in due}, len(heard)))
        return evaluate_part(self, due)

    monkeypatch.setattr(Detector, "_evaluate_part", judging_part)
    busy = [event(i, "view", i, i, f"s{i}", f"198.51.100.{i % 10}", "Busy/1.0") for i in range(40)]
    text = rees46_csv(sorted(rows + busy, key=lambda r: r["event_time"]))
    detect([MemorySource(text)], load_rules(), config=EVERY_BATCH, alert_listeners=[heard.extend])
    assert [(a["rule"], a["entity"]) for a in heard] == [("fast-scraper", entity)]
    actors, groups = {"ip", "session", "user"}, {"subnet", "user_agent", "global"}
    # Every part judges one side; the group part right after the scraper's alert heard it.
    assert all(kinds <= actors or not kinds & actors for kinds, _ in parts)
    first = next(i for i, (_, seen) in enumerate(parts) if seen == 1)
    assert parts[first - 1][0] <= actors and parts[first][0] & groups


def final_alerts(alerts) -> set[tuple]:
    """Each alert id with its rule, entity and final severity (escalations repeat the id)."""
    last = {a.alert_id: a for a in alerts}
    return {(i, a.rule, a.entity_type, a.entity, a.severity) for i, a in last.items()}


@pytest.fixture(scope="module")
def reference(traffic):
    return final_alerts(run(traffic, 1 << 20)[1])


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunk_bytes=st.integers(128 << 10, 1 << 20),
    cuts=st.lists(st.floats(0.01, 0.99), max_size=3),
)
def test_alerts_do_not_depend_on_batch_size_or_file_split(traffic, reference, chunk_bytes, cuts):
    header, _, body = traffic.partition("\n")
    lines = body.splitlines(keepends=True)
    bounds = sorted({0, len(lines), *(int(c * len(lines)) for c in cuts)})
    parts = [header + "\n" + "".join(lines[a:b]) for a, b in itertools.pairwise(bounds)]
    _, alerts = detect(
        [
            MemorySource(part, source_id=f"part{i}", chunk_bytes=chunk_bytes)
            for i, part in enumerate(parts)
        ],
        load_rules(),
        config=EVERY_BATCH,
    )
    assert final_alerts(alerts) == reference


def test_detect_command_writes_alert_lines(tmp_path: Path, traffic):
    data = tmp_path / "in.csv"
    data.write_text(traffic)
    alerts = tmp_path / "alerts.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "detect", str(data), "--alerts", str(alerts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert len(lines) == len(INJECTED)
    for line in lines:
        assert set(line) >= {
            "alert_id",
            "rule",
            "severity",
            "entity_type",
            "entity",
            "first_seen",
            "last_seen",
            "detected_at",
            "count",
            "evidence",
            "explanation",
        }
        assert line["first_seen"].endswith("Z")


def test_a_user_rule_with_a_price_filter_runs(traffic, tmp_path):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        """
[[rule]]
name = "pricey-views"
key = "ip"
window = "10m"
filter = "event_type == 'view' and price > 9"
condition = "views >= 300"
severity = "low"
"""
    )
    rules = [r for r in load_rules([rules_file]) if r.name == "pricey-views"]
    _, alerts = detect(
        [MemorySource(traffic, chunk_bytes=1 << 20)], rules, config=load_config(environ={})
    )
    # The injected scraper views 400 products at 9.99 within minutes from one IP.
    assert {(a.rule, a.entity) for a in alerts} == {("pricey-views", "203.0.113.7")}


def test_store_is_idempotent_escalates_and_exports_a_blocklist(tmp_path: Path, traffic):
    data = tmp_path / "in.csv"
    data.write_text(traffic)
    store = tmp_path / "alerts.db"
    command = [sys.executable, "-m", "ecomwatch.cli.main"]
    for _ in range(2):  # a replay of the same input changes nothing
        result = subprocess.run(
            [
                *command,
                "detect",
                str(data),
                "--alerts",
                str(tmp_path / "a.jsonl"),
                "--store",
                str(store),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    import sqlite3

    rows = sqlite3.connect(store).execute("SELECT rule, entity FROM alerts").fetchall()
    assert sorted(rows) == sorted((rule, entity) for rule, (entity, _) in INJECTED.items())
    nginx = subprocess.run(
        [*command, "blocklist", "--store", str(store)], capture_output=True, text=True, check=True
    )
    denied = [
        line.split()[1].rstrip(";") for line in nginx.stdout.splitlines() if line.startswith("deny")
    ]
    # IPs at medium or above; the search engine (info) and the session (not an IP) are not blocked.
    assert denied == ["192.0.2.50", "203.0.113.7"]
    blocks = json.loads(
        subprocess.run(
            [*command, "blocklist", "--store", str(store), "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert {b["entity"] for b in blocks} == set(denied)


class Recorder:
    """An operator that keeps every batch the pipeline hands it, with the watermark."""

    name = "recorder"

    def __init__(self) -> None:
        self.batches: list[tuple[pa.Table, int | None]] = []

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        self.batches.append((events, watermark_us))

    def snapshot(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        return None


def as_plain_strings(encoded: str) -> str:
    """An events checkpoint as earlier versions wrote it: strings, not dictionaries."""
    table = _from_ipc(encoded)
    plain = pa.schema(
        pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f for f in table.schema
    )
    return _to_ipc(table.cast(plain))


def without_event_codes(encoded: str) -> str:
    """An events checkpoint as versions before the event codes wrote it."""
    return _to_ipc(_from_ipc(encoded).drop_columns(["event_code"]))


@pytest.mark.parametrize("written_as", ["dictionaries", "plain strings", "no event codes"])
def test_a_detector_restored_from_its_checkpoint_raises_what_an_uninterrupted_one_does(
    traffic, written_as
):
    recorder = Recorder()
    Pipeline(
        committer=NoCheckpoints(), operators=[recorder], watermark=Watermark(lateness_s=5)
    ).run([MemorySource(traffic, chunk_bytes=16 << 10)])
    batches = recorder.batches
    # Stop in the middle of the cart abuse: neither half alone meets its condition.
    seen = itertools.accumulate(
        events["user_session"].to_pylist().count("s-hoard") for events, _ in batches
    )
    middle = next(i for i, count in enumerate(seen) if count >= 15) + 1
    assert 0 < middle < len(batches)

    whole = Detector(load_rules(), judge_rows=5_000)
    for events, watermark in batches:
        whole.process(events, watermark)
    whole.snapshot()

    before = Detector(load_rules(), judge_rows=5_000)
    for events, watermark in batches[:middle]:
        before.process(events, watermark)
    checkpoint = json.loads(json.dumps(before.snapshot()))  # as it is committed
    assert checkpoint["events_ipc"] and checkpoint["ip_seen_ipc"]
    if written_as == "plain strings":
        checkpoint["events_ipc"] = as_plain_strings(checkpoint["events_ipc"])
    if written_as == "no event codes":
        checkpoint["events_ipc"] = without_event_codes(checkpoint["events_ipc"])
    after = Detector(load_rules(), judge_rows=5_000)
    after.restore(checkpoint)
    for events, watermark in batches[middle:]:
        after.process(events, watermark)
    after.snapshot()

    assert final_alerts(before.alerts + after.alerts) == final_alerts(whole.alerts)
    assert {a.rule for a in whole.alerts} == set(INJECTED)


def recorded(rows: list[dict]) -> list[tuple[pa.Table, int | None]]:
    recorder = Recorder()
    Pipeline(
        committer=NoCheckpoints(), operators=[recorder], watermark=Watermark(lateness_s=5)
    ).run([MemorySource(rees46_csv(rows))])
    return recorder.batches


@pytest.mark.parametrize("behind", [False, True])
def test_a_live_detector_judges_every_batch_unless_its_input_piles_up(behind: bool):
    """A service that keeps up judges every micro-batch; one falling behind caps judging at
    `judge_share` of its time (a tiny share here: no second round soon after the first)."""
    shopper = [event(i, "view", 100 + i, 1, "s-shop", "192.0.2.1", CHROME) for i in range(5)]
    scraper = INJECTED["fast-scraper"][1]
    detector = Detector(load_rules(), judge_share=0.0001, behind=lambda: behind)
    for events, watermark in recorded(shopper):
        detector.process(events, watermark)  # the first round: always allowed
    assert not detector.alerts
    for events, watermark in recorded(scraper):
        detector.process(events, watermark)
    raised = {a.rule for a in detector.alerts}
    assert ("fast-scraper" in raised) is not behind
    detector.snapshot()  # a checkpoint judges what is left either way
    assert "fast-scraper" in {a.rule for a in detector.alerts}


def _rules(tmp_path: Path, text: str):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return [r for r in load_rules([path]) if r.name == "mine"]


def _category_traffic() -> str:
    """An hour of five views every ten minutes in one category, then 60 views from 20 new IPs
    within a window (and three from another IP besides)."""
    rows = [
        event(600 * w + 100 * i, "view", 500 + i, 100 + i, f"q-{w}-{i}", f"10.0.0.{i}", CHROME)
        for w in range(6)
        for i in range(5)
    ]
    rows += [
        event(3_600 + 10 * i + k, "view", 600 + k, 200 + i, f"b-{i}", f"24.0.{i}.9", CHROME)
        for i in range(20)
        for k in range(3)
    ]
    rows += [event(3_900 + k, "view", 700, 300, "o", "73.0.0.1", CHROME) for k in range(3)]
    return rees46_csv(sorted(rows, key=lambda r: r["event_time"]))


def test_a_baseline_averages_every_earlier_window_of_a_screened_rule(tmp_path):
    # distinct_ips is a costly feature, views a cheap one: the rule's windows are screened by
    # its cheap part, which the quiet windows fail; the baseline must still count them.
    rules = _rules(
        tmp_path,
        """
[[rule]]
name = "mine"
key = "category"
window = "10m"
condition = "views >= 30 and distinct_ips >= 10 and views >= 5 * baseline"
severity = "high"
""",
    )
    _, alerts = detect([MemorySource(_category_traffic())], rules, config=EVERY_BATCH)
    (alert,) = alerts
    assert alert.entity == "2053013555631882655" and alert.entity_type == "category"
    assert alert.evidence["baseline"] == pytest.approx(5)


@pytest.mark.parametrize(("share", "flagged"), [(0.96, False), (0.95, True)])
def test_a_group_needs_min_share_of_its_ips_as_members(tmp_path, share, flagged):
    # The burst window holds 21 IPs; 20 viewed three products, the 21st one product three
    # times: 20 members of 21 (0.952). 0.96 asks for 21 members, 0.95 for 20.
    rules = _rules(
        tmp_path,
        f"""
[[rule]]
name = "mine"
key = "category"
window = "10m"
condition = "views >= 30"
severity = "high"

[rule.members]
key = "ip"
condition = "distinct_products >= 2"
min = 5
min_share = {share}
""",
    )
    _, alerts = detect([MemorySource(_category_traffic())], rules, config=EVERY_BATCH)
    members = {a.entity for a in alerts if a.entity_type == "ip"}
    assert bool(members) is flagged
    if flagged:
        assert len(members) == 20 and "73.0.0.1" not in members


def test_a_scraper_still_at_it_under_its_cooldown_keeps_one_open_incident():
    """Scraping for 70 minutes under fast-scraper's 30-minute cooldown, incidents resolving
    after 10 quiet minutes: the windows the cooldown holds keep the incident open (minutes
    without a new alert are not quiet), and the alert after the cooldown joins it, so there
    is one incident, which resolves once, 10 minutes after the scraper stopped."""
    ip = "203.0.113.77"
    scraping = [event(i / 1.5, "view", 2 * 10**6 + i, 9, "s-long", ip, CHROME) for i in range(6300)]
    later = [
        event(4 * 3600 + i, "view", 100 + i, 1, "s-shop", "192.0.2.1", CHROME) for i in range(3)
    ]
    records: list[dict] = []
    detector = Detector(
        load_rules(), incidents=IncidentsConfig(quiet_s=600), incident_listeners=[records.extend]
    )
    for events, watermark in recorded(scraping + later):
        detector.process(events, watermark)
    detector.snapshot()
    alerts = [a for a in detector.alerts if a.entity == ip]
    assert len({a.alert_id for a in alerts}) >= 2  # the cooldown ended and it alerted again
    ours = {a.incident_id for a in alerts}
    assert len(ours) == 1
    history = [r for r in records if r["incident_id"] in ours]
    states = [r["state"] for r in history]
    assert states[-1] == "resolved" and states.count("resolved") == 1
    assert history[-1]["reopened"] == 0
    ended = START + timedelta(seconds=6299 / 1.5)
    resolved_at = datetime.fromisoformat(history[-1]["resolved_at"].replace("Z", "+00:00"))
    assert resolved_at >= ended + timedelta(minutes=10)


def test_a_rule_screened_by_its_counted_rows_alone_still_judges_its_whole_condition():
    # Both IPs view 70 products in a minute: the screen lets both windows through on their
    # views alone; the one that also carts a product fails `carts == 0` in the match.
    rules = [rule for rule in load_rules() if rule.name == "fast-scraper"]
    assert counts_alone(rules[0])
    rows = [
        event(k * 0.8, "view", 10**6 + k, 1, "a", ip, CHROME)
        for ip in ("198.51.100.1", "198.51.100.2")
        for k in range(70)
    ]
    rows.append(event(30, "cart", 10**6, 2, "b", "198.51.100.2", CHROME))
    text = rees46_csv(sorted(rows, key=lambda r: r["event_time"]))
    _, alerts = detect([MemorySource(text)], rules, config=EVERY_BATCH)
    assert [(a.rule, a.entity) for a in alerts] == [("fast-scraper", "198.51.100.1")]
