"""The report's queries in Athena's SQL (Trino's dialect), for an analyst to run in the Athena
console over the table `ecomwatch lake register` catalogued.

They are not a second copy: each is the report's own DuckDB query (analytics/report.py),
transpiled by sqlglot, with the view `events` replaced by the catalog table. One expression
has no direct translation and is swapped first: the hour of an event, which the report
computes from epoch microseconds (fast in DuckDB), is `date_trunc('hour', event_time)` in
Trino — the same hour, since event times are UTC.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from ecomwatch.analytics.report import RAW_SQL, TOP_ABANDONED, TOP_N
from ecomwatch.lake.rollups import HOUR_OF_EVENT

HOUR_IN_TRINO = "date_trunc('hour', event_time)"
# The report's breakdowns: name → the key its per-key query groups by.
PER_KEY = {
    "categories": "category_code",
    "top_level_categories": "split_part(category_code, '.', 1)",
    "brands": "brand",
}


def report_queries() -> dict[str, str]:
    """Every query the report runs over the raw events, in DuckDB SQL over `events`, with its
    parameters filled in, by the name of the report section it feeds."""
    queries = {name: RAW_SQL[name] for name in ("totals", "hourly", "funnel", "carted")}
    queries["cart_abandonment"] = RAW_SQL["abandonment"].format(top=TOP_ABANDONED)
    for name, key in PER_KEY.items():
        queries[name] = RAW_SQL["per_key"].format(key=key)
    for order in ("revenue", "views"):
        queries[f"top_products_by_{order}"] = (
            f"SELECT * FROM ({RAW_SQL['products']}) AS p "
            f"ORDER BY {order} DESC, product_id LIMIT {TOP_N}"
        )
    return queries


def _swap_tables(
    sql: str, read: str, write: str, old: tuple[str, str], new: tuple[str, str]
) -> str:
    """`sql` from dialect `read` to `write`, every reference to table `old` (database, name;
    database "" for none) made one to `new`, keeping its alias."""
    tree = sqlglot.parse_one(sql, read=read)
    for node in list(tree.find_all(exp.Table)):
        if (node.db, node.name) == old:
            swapped = exp.Table(
                this=exp.to_identifier(new[1]),
                db=exp.to_identifier(new[0]) if new[0] else None,
                alias=node.args.get("alias"),
            )
            node.replace(swapped)
    return tree.sql(dialect=write, pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE)


def to_athena(sql: str, database: str, table: str) -> str:
    """A report query for Athena: Trino's dialect, over `database.table`."""
    sql = sql.replace(HOUR_OF_EVENT, HOUR_IN_TRINO)
    return _swap_tables(sql, "duckdb", "trino", ("", "events"), (database, table))


def from_athena(sql: str, database: str, table: str) -> str:
    """An Athena query back in DuckDB's dialect over the view `events` (how the tests check
    that the Athena text computes the report's figures)."""
    return _swap_tables(sql, "trino", "duckdb", (database, table), ("", "events"))


def athena_script(database: str, table: str) -> str:
    """Every report query for Athena, each after a comment naming the report section it
    feeds, separated by semicolons (Athena's console runs one statement at a time)."""
    parts = [
        f"-- {name}\n{to_athena(sql, database, table)};" for name, sql in report_queries().items()
    ]
    return "\n\n".join(parts) + "\n"
