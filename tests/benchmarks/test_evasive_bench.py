"""`bench evasive`: the targets it checks, and its live path against a real `serve`."""

from __future__ import annotations

from pathlib import Path

from ecomwatch.benchmarks.evasive_bench import _live_alerts
from ecomwatch.detect.evaluate import Score
from ecomwatch.detect.evasive_targets import MIN_RECALL, misses
from ecomwatch.simulate.evasive import EVASIVE_LEGIT_KINDS
from ecomwatch.testing import rees46_csv


def _score(**changes: object) -> Score:
    """A score meeting every target, with `changes` applied."""
    per_kind: dict[str, dict[str, object]] = {
        kind: {"flagged": 10, "ips": 10, "recall": 1.0} for kind in MIN_RECALL
    }
    per_kind |= {kind: {"flagged": 0, "ips": 5} for kind in EVASIVE_LEGIT_KINDS}
    per_kind["normal"] = {"flagged": 1}
    score = Score(name="ecomwatch", per_kind=per_kind, precision=0.99, flood_delay_s=30.0)
    for name, value in changes.items():
        setattr(score, name, value)
    return score


def test_a_score_meeting_every_target_misses_none() -> None:
    assert misses(_score(), ordinary_ips=1_000) == []


def test_each_missed_target_is_named() -> None:
    score = _score(precision=0.9, flood_delay_s=None, high_global_alarms_in_marketing_spike=1)
    score.per_kind["card_tester"]["recall"] = 0.5
    score.per_kind["cgnat"]["flagged"] = 2
    score.per_kind["normal"]["flagged"] = 3
    missed = misses(score, ordinary_ips=1_000)
    assert len(missed) == 6
    for words in ("precision 0.900", "card_tester recall 0.5", "cgnat: 2", "3 of 1000",
                  "after None", "marketing spike"):  # fmt: skip
        assert any(words in line for line in missed), words


def test_the_live_path_scores_what_a_real_serve_wrote(tmp_path: Path) -> None:
    """A scraper's 150 views in 75 s replayed into `serve` come back as its alert, again in a
    second run in the same working directory (a service resumed from the first run's
    checkpoint would hold the alert under its cooldown)."""
    scraper = [
        {"event_time": f"2019-11-01 10:{i // 60:02d}:{i % 60:02d} UTC", "event_type": "view",
         "product_id": 1000 + i, "category_id": 1, "price": 1.0, "user_id": 1,
         "user_session": f"s{i}", "ip": "203.0.113.9", "user_agent": "python-requests/2.31"}
        for i in range(0, 150)
    ]  # fmt: skip
    shopper = [
        {"event_time": f"2019-11-01 10:{m:02d}:30 UTC", "event_type": "view", "product_id": 7,
         "category_id": 1, "price": 9.0, "user_id": 2, "user_session": "h",
         "ip": "198.51.100.7", "user_agent": "Mozilla/5.0"}
        for m in range(0, 12)
    ]  # fmt: skip
    rows = sorted(scraper + shopper, key=lambda row: str(row["event_time"]))
    csv = tmp_path / "scraper.csv"
    csv.write_text(rees46_csv(rows))
    for _ in range(2):
        alerts = _live_alerts(csv, tmp_path / "live", None, speed=600, settle_s=1)
        flagged = {ip for alert in alerts for ip in alert["ips"]}
        assert "203.0.113.9" in flagged
        assert "198.51.100.7" not in flagged
