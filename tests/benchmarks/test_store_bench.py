"""`ecomwatch bench store`, briefly: the synthetic alerts escalate a fifth of themselves, and both
stores end with one row per alert id (the harness refuses figures from a store that lost some)."""

from __future__ import annotations

import pytest
from rich.console import Console

from ecomwatch.benchmarks.store_bench import _stores, synthetic_alerts
from tests.kinesis_servers import use_endpoint


def test_a_fifth_of_the_alerts_are_escalations_of_earlier_ones():
    alerts = synthetic_alerts(1_000)
    ids = [a["alert_id"] for a in alerts]
    assert len(alerts) == 1_000 and len(set(ids)) == 800
    escalated = [a for a in alerts if a["severity"] == "critical"]
    assert len(escalated) == 200
    first = {a["alert_id"]: a for a in reversed(alerts)}
    assert all(first[a["alert_id"]]["detected_at"] < a["detected_at"] for a in escalated)
    assert ids == [a["alert_id"] for a in sorted(alerts, key=lambda a: a["detected_at"])]


@pytest.mark.integration
def test_both_stores_keep_every_alert(dynalite, monkeypatch, tmp_path):
    use_endpoint(monkeypatch, dynalite)
    figures = _stores(synthetic_alerts(1_000), tmp_path, Console(quiet=True))
    assert figures["distinct_alerts"] == 800
    assert figures["sqlite_s"] > 0 and figures["dynamodb_s"] > 0
    assert figures["dynamodb_to_sqlite_throughput"] > 0
