"""Report correctness: every figure recomputed here with plain Python over the raw CSV."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ecomwatch.analytics.report import TimeRange, build_report, connect, define_lake_view
from ecomwatch.analytics.report import lake_report as lake_report_api
from ecomwatch.config import load_config
from ecomwatch.ingest import ingest
from ecomwatch.lake.open import open_lake
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic
from tests.conftest import rees46_file


def expected_report(rows: list[dict[str, str]]) -> dict:
    """The README's definitions, written out independently of the SQL."""

    def ts(r):
        return datetime.strptime(r["event_time"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)

    by_type = defaultdict(int)
    for r in rows:
        by_type[r["event_type"]] += 1
    sessions = defaultdict(set)
    for r in rows:
        if r["user_session"]:
            sessions[r["user_session"]].add(r["event_type"])
    revenue = sum(float(r["price"]) for r in rows if r["event_type"] == "purchase")
    hourly = defaultdict(lambda: {"events": 0, "purchases": 0, "users": set(), "sessions": set()})
    for r in rows:
        h = hourly[ts(r).replace(minute=0, second=0)]
        h["events"] += 1
        h["purchases"] += r["event_type"] == "purchase"
        h["users"].add(r["user_id"])
        if r["user_session"]:
            h["sessions"].add(r["user_session"])
    carted = {s for s, kinds in sessions.items() if "cart" in kinds}
    abandoned = {s for s in carted if "purchase" not in sessions[s]}
    abandoned_value = sum(
        float(r["price"])
        for r in rows
        if r["event_type"] == "cart" and r["user_session"] in abandoned
    )
    categories = defaultdict(lambda: {"views": 0, "purchases": 0, "revenue": 0.0, "buyers": set()})
    for r in rows:
        c = categories[r["category_code"] or None]
        c["views"] += r["event_type"] == "view"
        if r["event_type"] == "purchase":
            c["purchases"] += 1
            c["revenue"] += float(r["price"])
            c["buyers"].add(r["user_id"])
    return {
        "events": len(rows),
        "by_type": dict(by_type),
        "users": len({r["user_id"] for r in rows}),
        "sessions": len(sessions),
        "revenue": round(revenue, 2),
        "hourly": hourly,
        "funnel": tuple(
            sum(1 for k in sessions.values() if t in k) for t in ("view", "cart", "purchase")
        ),
        "carted": len(carted),
        "abandoned": len(abandoned),
        "abandoned_value": round(abandoned_value, 2),
        "categories": categories,
    }


def check(report: dict, rows: list[dict[str, str]]) -> None:
    want = expected_report(rows)
    totals = report["totals"]
    assert totals["events"] == want["events"]
    assert {k: v for k, v in totals["by_type"].items() if v} == want["by_type"]
    assert totals["users"] == want["users"]
    assert totals["sessions"] == want["sessions"]
    assert totals["revenue"] == pytest.approx(want["revenue"], abs=0.011)
    assert len(report["hourly"]) == len(want["hourly"])
    for h in report["hourly"]:
        w = want["hourly"][datetime.fromisoformat(h["hour"].replace("Z", "+00:00"))]
        assert (h["events"], h["purchases"], h["users"], h["sessions"]) == (
            w["events"],
            w["purchases"],
            len(w["users"]),
            len(w["sessions"]),
        )
    f = report["funnel"]
    assert (f["sessions_view"], f["sessions_cart"], f["sessions_purchase"]) == want["funnel"]
    if want["funnel"][0]:
        assert f["view_to_cart"] == pytest.approx(want["funnel"][1] / want["funnel"][0])
    a = report["cart_abandonment"]
    assert a["carted_sessions"] == want["carted"]
    assert a["abandoned_sessions"] == want["abandoned"]
    assert a["abandoned_value"] == pytest.approx(want["abandoned_value"], abs=0.011)
    cats = {c["category"]: c for c in report["categories"]}
    assert set(cats) == set(want["categories"])
    for key, w in want["categories"].items():
        c = cats[key]
        assert (c["views"], c["purchases"], c["buyers"]) == (
            w["views"],
            w["purchases"],
            len(w["buyers"]),
        )
        assert c["revenue"] == pytest.approx(w["revenue"], abs=0.011)
        assert c["conversion"] == (
            pytest.approx(w["purchases"] / w["views"]) if w["views"] else None
        )


def lake_report(lake: Path, window: TimeRange | None = None) -> dict:
    con = connect()
    define_lake_view(con, open_lake(lake).data_files(), window)
    return build_report(con, rejected=0)


@pytest.mark.parametrize("lake_format", ["hudi", "parquet"])
def test_report_matches_independent_computation_on_simulated_traffic(tmp_path, lake_format):
    csv_path = tmp_path / "t.csv"
    write_traffic(generate(TrafficSpec(events=30_000, seed=11, days=1)), csv_path)
    config = load_config(environ={"ECOMWATCH_LAKE__FORMAT": lake_format})
    ingest([csv_path], tmp_path / "lake", config=config)
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    check(lake_report(tmp_path / "lake"), rows)


def test_report_matches_on_real_rees46_sample(tmp_path):
    path = rees46_file("multicat_2019-Oct")
    ingest([path], tmp_path / "lake", config=load_config(environ={}))
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["user_session"] is not None]  # drop truncated row
    check(lake_report(tmp_path / "lake"), rows)


def test_since_until_filter(tmp_path):
    csv_path = tmp_path / "t.csv"
    write_traffic(generate(TrafficSpec(events=5_000, seed=2, days=1)), csv_path)
    ingest([csv_path], tmp_path / "lake", config=load_config(environ={}))
    since = datetime(2019, 11, 1, 6, tzinfo=UTC)
    until = datetime(2019, 11, 1, 12, tzinfo=UTC)
    with csv_path.open(newline="") as f:
        rows = [
            r
            for r in csv.DictReader(f)
            if since
            <= datetime.strptime(r["event_time"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
            < until
        ]
    check(lake_report(tmp_path / "lake", TimeRange(since, until)), rows)


def test_empty_lake_reports_zeros(tmp_path):
    open_lake(tmp_path, writer=True).close()
    report = lake_report(tmp_path)
    assert report["totals"]["events"] == 0
    assert report["funnel"]["view_to_cart"] is None
    assert report["hourly"] == []


def test_rollup_report_equals_raw_report_across_many_commits(tmp_path, monkeypatch):
    """Sessions and users span commits; the merged rollups must still give the exact figures."""
    csv_path = tmp_path / "t.csv"
    write_traffic(generate(TrafficSpec(events=40_000, seed=21, days=1)), csv_path)
    config = load_config(
        environ={
            "ECOMWATCH_ENGINE__CHECKPOINT_ROWS": "3000",
            "ECOMWATCH_DECODE__CHUNK_BYTES": "65536",
        }
    )
    ingest([csv_path], tmp_path / "lake", config=config)
    table = open_lake(tmp_path / "lake")
    assert len(table.commits()) > 10
    from_rollups = lake_report_api(table)
    from_raw = lake_report_api(table, use_rollups=False)
    assert from_rollups == from_raw
    with csv_path.open(newline="") as f:
        check(from_rollups, list(csv.DictReader(f)))
    # A window on whole hours is answered by the rollups too, with the same figures.
    window = TimeRange(datetime(2019, 11, 1, 7, tzinfo=UTC), datetime(2019, 11, 1, 15, tzinfo=UTC))
    served = spy_on_sources(monkeypatch)
    assert lake_report_api(table, window) == lake_report_api(table, window, use_rollups=False)
    assert served[0] == "rollups" and served[1] == "raw"
    with csv_path.open(newline="") as f:
        check(lake_report_api(table, window), in_window(csv.DictReader(f), window))
    # A window inside an hour cannot be: it reads the raw events.
    served.clear()
    lake_report_api(table, TimeRange(window.since, datetime(2019, 11, 1, 9, 30, tzinfo=UTC)))
    assert served == ["raw"]


def spy_on_sources(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record, per report built, whether it read the rollups or the raw events."""
    from ecomwatch.analytics import report

    served: list[str] = []
    build = report.build_report

    def recording(con, *, rejected=0, sql=report.RAW_SQL):
        served.append("rollups" if sql is report.ROLLUP_SQL else "raw")
        return build(con, rejected=rejected, sql=sql)

    monkeypatch.setattr(report, "build_report", recording)
    return served


def in_window(rows, window: TimeRange) -> list[dict[str, str]]:
    def ts(r):
        return datetime.strptime(r["event_time"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)

    return [r for r in rows if window.since <= ts(r) < window.until]


def test_a_window_on_old_rollups_without_hours_reads_the_raw_events(tmp_path, monkeypatch):
    """Rollup files written before item, session_cart and buyer were keyed by hour: a windowed
    report must not take their rows as inside every window."""
    from ecomwatch.lake import rollups

    old = dict(rollups.ROLLUP_SQL)
    for name in ("item", "session_cart", "buyer"):
        old[name] = old[name].replace("{hour} AS hour,", "")
    monkeypatch.setattr(rollups, "ROLLUP_SQL", old)
    csv_path = tmp_path / "t.csv"
    write_traffic(generate(TrafficSpec(events=5_000, seed=2, days=1)), csv_path)
    ingest([csv_path], tmp_path / "lake", config=load_config(environ={}))
    monkeypatch.undo()
    table = open_lake(tmp_path / "lake")
    assert "hour" not in pq_columns(table.rollup_files()["item"][0])
    served = spy_on_sources(monkeypatch)
    window = TimeRange(datetime(2019, 11, 1, 6, tzinfo=UTC), datetime(2019, 11, 1, 12, tzinfo=UTC))
    assert lake_report_api(table, window) == lake_report_api(table, window, use_rollups=False)
    assert served == ["raw", "raw"]
    served.clear()
    assert lake_report_api(table) == lake_report_api(table, use_rollups=False)
    assert served == ["rollups", "raw"]


def pq_columns(path: str) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_schema(path).names
