"""`ecomwatch bench month`: a month of shop traffic end to end, stage by stage.

A month at REES46 2019-Nov scale (67.5 million events in 30 days, the simulator's users,
sessions, products and event mix) is simulated once, then each stage a user runs is timed as
that user would run it — as an `ecomwatch` child process:

1. the floor: DuckDB reading the CSV once and writing it once as ZSTD Parquet;
2. `ecomwatch run CSV --alerts FILE`: ingest with detection into the default (Hudi) lake, its
   resident memory sampled every half second (flat memory: the last half's peak against the
   first half's);
3. `ecomwatch report --format json`, the same for the first week (`--since`/`--until` on whole
   days: from the rollups too), then `report --exclude-bots --alerts FILE`.

Figures: seconds and events/s per stage, ingest + detection against the floor, peak RSS, lake
bytes against DuckDB's Parquet of the same rows, alerts and incidents, and this machine's speed
at pure Python.

`source` times the same stages on a CSV the user brings instead (REES46's own 2019-Nov.csv:
67.5 M events without ip or user_agent), its first week counted from its first event's day.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console

from ecomwatch.benchmarks.child import ecomwatch_command, python_seconds, timed_child
from ecomwatch.benchmarks.ingest_bench import simulated_csv, timed_floor, timed_run
from ecomwatch.benchmarks.workdir import bench_workdir
from ecomwatch.lake.open import open_lake

MONTH_EVENTS = 67_500_000


def run_month_bench(
    *, events: int, keep: Path | None, seed: int, console: Console, source: Path | None = None
) -> dict[str, Any]:
    """The month's figures; `source` is a file to time instead of a simulated month (it is
    read, never changed or removed)."""
    with bench_workdir(keep, "ecomwatch-bench-month-") as base:
        csv_path = source if source is not None else simulated_csv(base, events, seed, console)
        figures = _bench(base, csv_path, kept=keep is not None, console=console)
    return {
        **figures,
        "input": str(source) if source is not None else "simulated",
        "kept": str(keep) if keep else None,
    }


def _first_week(report_json: str) -> tuple[str, str]:
    """The whole UTC days of the report's first week: its first event's day and the six after
    (`--since`/`--until` on whole days are served from the rollups)."""
    first = date.fromisoformat(json.loads(report_json)["totals"]["first_event"][:10])
    return first.isoformat(), (first + timedelta(days=7)).isoformat()


def _bench(base: Path, csv_path: Path, *, kept: bool, console: Console) -> dict[str, Any]:
    console.print("1/4 the floor: DuckDB CSV → ZSTD Parquet")
    floor_parquet = base / "floor.parquet"
    try:
        floor, floor_bytes = timed_floor(csv_path, floor_parquet)
    except duckdb.Error as exc:  # the baseline needs a CSV DuckDB can read
        raise RuntimeError(f"DuckDB could not copy {csv_path} as a CSV (the floor): {exc}") from exc
    floor_parquet.unlink()
    console.print("2/4 ecomwatch run with detection into a Hudi lake")
    lake, alerts = base / "lake", base / "alerts.jsonl"
    run = timed_run(csv_path, lake, alerts=alerts, sample_rss=True)
    summary = json.loads(run.last_json_line())
    if summary["accepted"] == 0:
        where = (
            f"with their reasons in {summary['dead_letter']}"
            if kept
            else "run again with --keep DIR to keep their reasons in the lake's dead letter"
        )
        raise RuntimeError(
            f"no event of {csv_path} was accepted ({summary['rejected']:,} rejected; {where}): "
            "nothing to time"
        )
    console.print("3/4 ecomwatch report, whole and for the first week")
    report = timed_child(ecomwatch_command("report", "--lake", str(lake), "--format", "json"))
    since, until = _first_week(report.stdout)
    week = timed_child(
        ecomwatch_command(
            "report", "--lake", str(lake), "--format", "json",
            "--since", since, "--until", until,
        )
    )  # fmt: skip
    console.print("4/4 ecomwatch report --exclude-bots")
    excluding = timed_child(
        ecomwatch_command(
            "report", "--lake", str(lake), "--format", "json",
            "--exclude-bots", "--alerts", str(alerts),
        )
    )  # fmt: skip
    excluded = json.loads(excluding.stdout).get("excluded_flagged_events", 0)
    table = open_lake(lake)
    data_bytes = table.total_bytes()
    accepted = summary["accepted"]
    return {
        "bench": "month",
        "events": accepted,
        "rejected": summary["rejected"],
        "csv_bytes": csv_path.stat().st_size,
        "floor_seconds": round(floor, 3),
        "run_detect_seconds": round(run.seconds, 3),
        "run_detect_events_per_s": round(accepted / run.seconds),
        # Target <= 1.7: ingest and detection against DuckDB's one read and one write.
        "ratio_to_floor": round(run.seconds / floor, 3),
        "peak_rss_mb": summary["peak_rss_mb"],
        # Flat memory: the highest RSS sampled in the run's second half against its first half.
        "rss_first_half_peak_mb": run.peak_rss_mb(0.0, 0.5),
        "rss_second_half_peak_mb": run.peak_rss_mb(0.5, 1.0),
        "alerts": summary.get("alerts", 0),
        "incidents": summary.get("incidents", 0),
        "hudi_data_bytes": data_bytes,
        "rollup_bytes": table.rollup_bytes(),
        "floor_parquet_bytes": floor_bytes,
        "hudi_to_duckdb_parquet": round(data_bytes / floor_bytes, 3),
        # Each as a user runs it: the process's start, the lake's opening, the queries.
        "report_s": round(report.seconds, 2),
        "report_first_week_s": round(week.seconds, 2),
        "first_week_events": json.loads(week.stdout)["totals"]["events"],
        "report_exclude_bots_s": round(excluding.seconds, 2),
        "excluded_flagged_events": excluded,
        "cpus": os.cpu_count(),
        "python_sum_range_1e8_s": round(python_seconds(), 2),
    }
