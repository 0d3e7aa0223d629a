"""Rules with the same key, window and filter are judged from one shared aggregation, a rule
whose condition needs some row skips the windows without one, and a round whose rows hold too
few of them skips the rule; what they raise is exactly what judging each rule on its own, over
every window, raises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from ecomwatch.config import Config
from ecomwatch.detect import detector as detector_module
from ecomwatch.detect import window_sql
from ecomwatch.detect.rules import load_rules
from ecomwatch.detect.run import detect
from ecomwatch.simulate.attacks import AttackScenario
from ecomwatch.simulate.evasive import EvasiveScenario
from ecomwatch.simulate.traffic import TrafficSpec
from ecomwatch.simulate.writers import write_traffic
from ecomwatch.sources.files import FileSource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"
HONEYPOT = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "accesslogs"
    / "honeypot2_2022__ch4n3-yoon_web-application-threat-analysis_access.log"
)  # fmt: skip


def _one_query_per_rule(judged: Sequence[window_sql.Judging]) -> str:
    return " UNION ALL BY NAME ".join(
        f"({window_sql.matches_sql(j.rule, j.number, j.first_us, j.last_seq, screened=j.screened)})"
        for j in judged
    )


def _alerts(log: Path, *, skipping: bool = True) -> list[tuple[object, ...]]:
    # Batches of about 100 lines, each judged: rules come due at different ticks, so a round's
    # rules start at different windows and last judged different batches.
    config = Config.model_validate({"detect": {"judge_rows": 0}})
    rules = load_rules()
    if not skipping:
        rules = [replace(rule, needed_row_sql=None, round_need=None) for rule in rules]
    _, alerts = detect([FileSource(log, chunk_bytes=20_000)], rules, config=config)
    return sorted(
        (a.rule, a.entity, a.window_start.isoformat(), sorted(a.evidence.items()), a.severity)
        for a in alerts
    )


@pytest.mark.parametrize(
    "log",
    [
        EXAMPLES / "web-attacks.log",
        pytest.param(
            HONEYPOT,
            marks=pytest.mark.skipif(not HONEYPOT.is_file(), reason="no ../shared/data here"),
        ),
    ],
    ids=["fixture", "honeypot"],
)
def test_shared_and_skipping_raise_what_one_full_query_per_rule_raises(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared_calls = []
    real_shared = window_sql.shared_matches_sql

    def counting(group: Sequence[window_sql.Judging]) -> str:
        shared_calls.append(len(group))
        return real_shared(group)

    monkeypatch.setattr(window_sql, "shared_matches_sql", counting)
    shared = _alerts(log)
    # The web rules per IP and 10 minutes (those whose rows the round holds)
    assert shared_calls and max(shared_calls) >= 4
    monkeypatch.setattr(detector_module, "round_matches_sql", _one_query_per_rule)
    assert _alerts(log, skipping=False) == shared
    assert len({alert[0] for alert in shared}) >= 5


def _swarm_alerts(*, screening: bool) -> list[tuple[object, ...]]:
    config = Config.model_validate({"detect": {"judge_rows": 0}})
    rules = load_rules()
    if not screening:
        # Members not screened by the rows they need, windows with a baseline not by the
        # condition's cheap part.
        rules = [replace(rule, members_need=None, prefilter_sql="TRUE") for rule in rules]
    _, alerts = detect([FileSource(EXAMPLES / "swarms.csv.gz")], rules, config=config)
    return sorted(
        (a.rule, a.entity, a.window_start.isoformat(), sorted(a.evidence.items()), a.severity)
        for a in alerts
    )


def test_group_members_aggregated_only_when_they_hold_the_rows_they_need() -> None:
    """`long-tail-swarm` aggregates only the IPs with three long-tail views; what it raises
    is what aggregating every IP of the window raises."""
    long_tail = next(rule for rule in load_rules() if rule.name == "long-tail-swarm")
    assert long_tail.members_need is not None and long_tail.members_need[1] == 3
    screened = _swarm_alerts(screening=True)
    assert sum(alert[0] == "long-tail-swarm" for alert in screened) >= 20
    assert _swarm_alerts(screening=False) == screened


def test_a_baseline_rule_counts_costly_features_only_for_windows_passing_its_cheap_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`category-swarm` counts a category's distinct IPs only in the windows whose views
    surge above the baseline; the baseline still averages every window, and what it raises
    is what counting them in every window raises."""
    swarm = next(rule for rule in load_rules() if rule.name == "category-swarm")
    assert window_sql._baseline_screens(swarm)
    split = []
    real = window_sql._baseline_matches_sql

    def counting(rule: object, *args: object) -> str:
        split.append(rule)
        return real(rule, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(window_sql, "_baseline_matches_sql", counting)
    screened = _swarm_alerts(screening=True)
    assert split and sum(alert[0] == "category-swarm" for alert in screened) >= 10
    split.clear()
    assert _swarm_alerts(screening=False) == screened
    assert not split


def test_screened_rules_sharing_an_aggregation_raise_what_one_query_each_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`low-and-slow-scraper` and `catalogue-walk` (per IP and hour) compute their costly
    features once over the windows either let through; each raises what its own query over
    its own windows raises."""
    raw, _ = AttackScenario(TrafficSpec(events=30_000, seed=11, days=0.0625)).build()
    path = tmp_path / "attacks.csv"
    write_traffic([raw], path)
    config = Config.model_validate({"detect": {"judge_rows": 20_000}})

    def alerts() -> list[tuple[object, ...]]:
        _, raised = detect([FileSource(path)], load_rules(), config=config)
        return sorted((a.rule, a.entity, a.window_start.isoformat(), a.severity) for a in raised)

    screened_groups = []
    real_shared = window_sql.shared_matches_sql

    def counting(group: Sequence[window_sql.Judging]) -> str:
        if group[0].screened:
            screened_groups.append({j.rule.name for j in group})
        return real_shared(group)

    monkeypatch.setattr(window_sql, "shared_matches_sql", counting)
    shared = alerts()
    assert {"low-and-slow-scraper", "catalogue-walk"} <= set().union(*screened_groups)
    assert {"low-and-slow-scraper", "catalogue-walk"} <= {alert[0] for alert in shared}
    monkeypatch.setattr(detector_module, "round_matches_sql", _one_query_per_rule)
    assert alerts() == shared


def test_windows_needing_many_rows_are_aggregated_only_when_they_hold_that_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`distributed-hoarding` reads only the products with 15 carts in a window, `cart-abuse`
    the sessions with 12; what they raise is what reading every window with one cart
    raises."""
    raw, _ = EvasiveScenario(TrafficSpec(events=40_000, seed=5, days=0.125)).build()
    path = tmp_path / "evasive.csv"
    write_traffic([raw], path)
    config = Config.model_validate({"detect": {"judge_rows": 20_000}})
    counts: set[int] = set()
    real_holding = window_sql._holding

    def holding(*args: object) -> str:
        counts.add(int(args[-1]))  # type: ignore[call-overload]
        return real_holding(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(window_sql, "_holding", holding)

    def alerts(*, counting: bool) -> list[tuple[object, ...]]:
        rules = load_rules()
        if not counting:
            rules = [replace(rule, needed_row_count=1) for rule in rules]
        _, raised = detect([FileSource(path)], rules, config=config)
        return sorted((a.rule, a.entity, a.window_start.isoformat(), a.severity) for a in raised)

    counted = alerts(counting=True)
    assert {12, 15} <= counts
    assert {"distributed-hoarding", "cart-abuse"} & {alert[0] for alert in counted}
    counts.clear()
    assert alerts(counting=False) == counted
    assert counts <= {1, 3}  # members' long-tail views (3) only
