"""`report --sql athena`: the report's queries in Trino's dialect. Athena itself is not here,
so the Athena text is transpiled back and run on DuckDB over the lake: every query gives the
rows the report's own query gives, and the totals are the report's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from ecomwatch.analytics.athena_sql import from_athena, report_queries, to_athena
from ecomwatch.analytics.report import connect, define_lake_view, lake_report
from ecomwatch.config import load_config
from ecomwatch.ingest import ingest
from ecomwatch.lake.open import open_lake
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("athena")
    write_traffic(generate(TrafficSpec(events=30_000, seed=7, days=2)), base / "t.csv")
    ingest([base / "t.csv"], base / "lake", config=load_config(environ={}))
    return base / "lake"


def _rounded(rows: list[tuple]) -> list[tuple]:
    """Sums of floats differ in their last bits with the order they are added in (the
    report rounds money to cents)."""
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]


def test_every_query_in_athena_computes_what_the_report_computes(lake: Path):
    con = connect()
    define_lake_view(con, open_lake(lake).data_files())
    for name, duckdb_sql in report_queries().items():
        athena = to_athena(duckdb_sql, "shop", "ecomwatch_events")
        parsed = sqlglot.parse_one(athena, read="trino")  # valid Trino
        tables = {(t.db, t.name) for t in parsed.find_all(exp.Table)}
        assert ("shop", "ecomwatch_events") in tables and ("", "events") not in tables, name
        back = from_athena(athena, "shop", "ecomwatch_events")
        want = _rounded(con.execute(duckdb_sql).fetchall())
        assert want, name
        assert _rounded(con.execute(back).fetchall()) == want, name


def test_the_command_prints_each_query_under_its_name_and_the_totals_match(lake: Path):
    printed = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "report", "--lake", str(lake),
         "--sql", "athena", "--glue-database", "shop"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    statements = [s.strip() for s in printed.split(";") if s.strip()]
    names = [s.splitlines()[0].removeprefix("-- ") for s in statements]
    assert names == list(report_queries())
    con = connect()
    define_lake_view(con, open_lake(lake).data_files())
    totals = statements[0].split("\n", 1)[1]
    row = con.execute(from_athena(totals, "shop", "ecomwatch_events")).fetchone()
    report = lake_report(open_lake(lake))
    assert row is not None
    assert (row[0], row[7]) == (report["totals"]["events"], report["totals"]["revenue"])
    assert json.dumps(report)  # the report itself ran on the same lake


def test_an_unknown_dialect_is_refused(tmp_path: Path):
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "report", "--lake", str(tmp_path),
         "--sql", "bigquery"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.returncode == 2 and "--sql takes athena" in ran.stderr
