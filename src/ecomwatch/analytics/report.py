"""Business analytics over the lake, in DuckDB SQL.

Every query reads a view named `events` with the event schema, so the same SQL runs over the
lake's Parquet files, over a raw CSV (the benchmark's baseline) or over any other relation.
Definitions follow the report contract in the README ("Analytics").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from ecomwatch.analytics.web_report import web_section
from ecomwatch.engine.pipeline import total_rejected
from ecomwatch.lake.base import EventTable
from ecomwatch.lake.rollups import HOUR_OF_EVENT

TOP_N = 20
TOP_ABANDONED = 10

_TYPE_COUNTS = """
               count(*) FILTER (event_type = 'view') AS views,
               count(*) FILTER (event_type = 'cart') AS carts,
               count(*) FILTER (event_type = 'remove_from_cart') AS removes,
               count(*) FILTER (event_type = 'purchase') AS purchases"""
_TYPE_SUMS = """
               coalesce(sum(events) FILTER (event_type = 'view'), 0) AS views,
               coalesce(sum(events) FILTER (event_type = 'cart'), 0) AS carts,
               coalesce(sum(events) FILTER (event_type = 'remove_from_cart'), 0) AS removes,
               coalesce(sum(events) FILTER (event_type = 'purchase'), 0) AS purchases"""
# The abandonment figures from a relation `carts` (user_session, category_code, brand, price).
_ABANDONED = """
        SELECT 'total' AS kind, NULL AS key, count(DISTINCT user_session) AS sessions,
               sum(price) AS value FROM carts
        UNION ALL
        SELECT * FROM (SELECT 'category', category_code, count(DISTINCT user_session), sum(price)
                       FROM carts GROUP BY 2 ORDER BY 4 DESC, 2 NULLS LAST LIMIT {top})
        UNION ALL
        SELECT * FROM (SELECT 'brand', brand, count(DISTINCT user_session), sum(price)
                       FROM carts GROUP BY 2 ORDER BY 4 DESC, 2 NULLS LAST LIMIT {top})"""

# The report's SQL over the raw events: a view `events` with the event schema.
RAW_SQL: dict[str, str] = {
    "totals": f"""
        SELECT count(*) AS events, {_TYPE_COUNTS},
               count(DISTINCT user_id) AS users,
               count(DISTINCT user_session) AS sessions,
               round(coalesce(sum(price) FILTER (event_type = 'purchase'), 0), 2) AS revenue,
               min(event_time) AS first_event,
               max(event_time) AS last_event
        FROM events""",
    "hourly": f"""
        SELECT {HOUR_OF_EVENT} AS hour, count(*) AS events, {_TYPE_COUNTS},
               count(DISTINCT user_id) AS users,
               count(DISTINCT user_session) AS sessions
        FROM events GROUP BY 1 ORDER BY 1""",
    "funnel": """
        WITH s AS (
            SELECT user_session,
                   bool_or(event_type = 'view') AS viewed,
                   bool_or(event_type = 'cart') AS carted,
                   bool_or(event_type = 'purchase') AS bought
            FROM events WHERE user_session IS NOT NULL GROUP BY 1)
        SELECT count(*) FILTER (viewed), count(*) FILTER (carted), count(*) FILTER (bought)
        FROM s""",
    "abandonment": """
        WITH s AS (
            SELECT user_session
            FROM events WHERE user_session IS NOT NULL GROUP BY 1
            HAVING bool_or(event_type = 'cart') AND NOT bool_or(event_type = 'purchase')),
        carts AS (
            SELECT e.category_code, e.brand, e.price, e.user_session
            FROM events e JOIN s USING (user_session) WHERE e.event_type = 'cart')"""
    + _ABANDONED,
    "carted": """
        SELECT count(DISTINCT user_session) FROM events
        WHERE event_type = 'cart' AND user_session IS NOT NULL""",
    "per_key": """
        SELECT {key} AS key,
               count(*) FILTER (event_type = 'view') AS views,
               count(*) FILTER (event_type = 'cart') AS carts,
               count(*) FILTER (event_type = 'purchase') AS purchases,
               round(coalesce(sum(price) FILTER (event_type = 'purchase'), 0), 2) AS revenue,
               count(DISTINCT user_id) FILTER (event_type = 'purchase') AS buyers
        FROM events GROUP BY 1 ORDER BY revenue DESC, views DESC, key NULLS LAST""",
    "products": """
        SELECT product_id,
               count(*) FILTER (event_type = 'view') AS views,
               count(*) FILTER (event_type = 'purchase') AS purchases,
               round(coalesce(sum(price) FILTER (event_type = 'purchase'), 0), 2) AS revenue,
               min(category_code) AS category,
               min(brand) AS brand
        FROM events GROUP BY 1""",
}

# The same report over the rollups (lake/rollups.py): views hour_type, item, hour_session,
# session_cart and buyer, and the table session_flags made from hour_session once (a month has
# 15 M sessions: hashing their ids took 2-3 s per query that grouped by them). Every figure is
# an exact merge; tests compare it with RAW_SQL.
ROLLUP_SQL: dict[str, str] = {
    "totals": f"""
        WITH t AS (
            SELECT coalesce(sum(events), 0) AS events, {_TYPE_SUMS},
                   round(coalesce(sum(revenue) FILTER (event_type = 'purchase'), 0), 2)
                       AS revenue,
                   min(first_event) AS first_event, max(last_event) AS last_event
            FROM hour_type),
        who AS (
            SELECT (SELECT count(DISTINCT user_id) FROM hour_session) AS users,
                   (SELECT count(*) FROM session_flags) AS sessions)
        SELECT events, views, carts, removes, purchases, users, sessions, revenue,
               first_event, last_event
        FROM t, who""",
    "hourly": f"""
        WITH c AS (SELECT hour, sum(events) AS events, {_TYPE_SUMS}
                   FROM hour_type GROUP BY 1),
             s AS (SELECT hour, count(DISTINCT user_id) AS users,
                          count(DISTINCT user_session) AS sessions
                   FROM hour_session GROUP BY 1)
        SELECT hour, events, views, carts, removes, purchases, users, sessions
        FROM c JOIN s USING (hour) ORDER BY 1""",
    "funnel": """
        SELECT count(*) FILTER (viewed), count(*) FILTER (carted), count(*) FILTER (bought)
        FROM session_flags""",
    "abandonment": """
        WITH s AS (SELECT user_session FROM session_flags WHERE carted AND NOT bought),
        carts AS (
            SELECT c.category_code, c.brand, c.cart_value AS price, c.user_session
            FROM session_cart c JOIN s USING (user_session))"""
    + _ABANDONED,
    "carted": "SELECT count(*) FROM session_flags WHERE carted",
    "per_key": """
        WITH c AS (
            SELECT {key} AS key,
                   coalesce(sum(events) FILTER (event_type = 'view'), 0) AS views,
                   coalesce(sum(events) FILTER (event_type = 'cart'), 0) AS carts,
                   coalesce(sum(events) FILTER (event_type = 'purchase'), 0) AS purchases,
                   round(coalesce(sum(revenue) FILTER (event_type = 'purchase'), 0), 2)
                       AS revenue
            FROM item GROUP BY 1),
        b AS (SELECT {key} AS key, count(DISTINCT user_id) AS buyers FROM buyer GROUP BY 1)
        SELECT c.key, views, carts, purchases, revenue, coalesce(b.buyers, 0) AS buyers
        FROM c LEFT JOIN b ON c.key IS NOT DISTINCT FROM b.key
        ORDER BY revenue DESC, views DESC, key NULLS LAST""",
    "products": """
        SELECT product_id,
               coalesce(sum(events) FILTER (event_type = 'view'), 0) AS views,
               coalesce(sum(events) FILTER (event_type = 'purchase'), 0) AS purchases,
               round(coalesce(sum(revenue) FILTER (event_type = 'purchase'), 0), 2) AS revenue,
               min(category_code) AS category,
               min(brand) AS brand
        FROM item GROUP BY 1""",
}


@dataclass(frozen=True)
class TimeRange:
    since: datetime | None = None
    until: datetime | None = None

    def where(self, column: str = "event_time") -> str:
        """The window over `column`: the events' time, or the rollups' `hour` (whole hours)."""
        parts = []
        if self.since is not None:
            parts.append(f"{column} >= TIMESTAMPTZ '{self.since.isoformat()}'")
        if self.until is not None:
            parts.append(f"{column} < TIMESTAMPTZ '{self.until.isoformat()}'")
        return " AND ".join(parts) or "TRUE"

    def on_whole_hours(self) -> bool:
        """Both ends (when given) fall on a UTC hour: the rollups' hours can answer."""
        return all(
            t is None or t.astimezone(UTC).replace(minute=0, second=0, microsecond=0) == t
            for t in (self.since, self.until)
        )


@dataclass(frozen=True)
class Flagged:
    """Traffic to leave out of the analytics: IPs, sessions and users flagged by detection."""

    ips: frozenset[str] = frozenset()
    sessions: frozenset[str] = frozenset()
    users: frozenset[int] = frozenset()

    @classmethod
    def from_alerts(cls, alerts: Sequence[dict[str, Any]]) -> Flagged:
        """Entities of alerts at medium or above; groups count through their members."""
        from ecomwatch.detect.rules import is_flagging

        ips, sessions, users = set(), set(), set()
        for alert in alerts:
            if not is_flagging(alert["severity"]):
                continue
            kind, entity = alert["entity_type"], alert["entity"]
            if kind == "ip":
                ips.add(entity)
            elif kind == "session":
                sessions.add(entity)
            elif kind == "user" and entity.isdigit():
                users.add(int(entity))
        return cls(frozenset(ips), frozenset(sessions), frozenset(users))

    def where(self, con: duckdb.DuckDBPyConnection) -> str:
        """A predicate keeping unflagged events (registers the sets on `con`)."""
        for name, values, kind in (
            ("flagged_ips", self.ips, pa.string()),
            ("flagged_sessions", self.sessions, pa.string()),
            ("flagged_users", self.users, pa.int64()),
        ):
            con.register(name, pa.table({"v": pa.array(sorted(values), kind)}))
        return (
            "NOT (coalesce(ip IN (SELECT v FROM flagged_ips), FALSE) "
            "OR coalesce(user_session IN (SELECT v FROM flagged_sessions), FALSE) "
            "OR coalesce(user_id IN (SELECT v FROM flagged_users), FALSE))"
        )


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _parquet_source(con: duckdb.DuckDBPyConnection, name: str, files: Sequence[str]) -> str:
    """A relation over Parquet files: local paths through read_parquet; s3:// objects through a
    pyarrow dataset (DuckDB's own S3 support is an extension it would download)."""
    if not any(f.startswith("s3://") for f in files):
        # By name: base files written before a column was added lack it (read as null).
        return f"read_parquet([{_listing(files)}], hive_partitioning = false, union_by_name = true)"
    import pyarrow.dataset as ds

    from ecomwatch.lake.storage import s3_filesystem

    dataset = ds.dataset(
        [f[len("s3://") :] for f in files], filesystem=s3_filesystem(), format="parquet"
    )
    con.register(f"{name}_files", dataset)
    return f"{name}_files"


def define_lake_view(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[str],
    window: TimeRange | None = None,
    exclude: Flagged | None = None,
) -> None:
    """Create the `events` view over committed Parquet files (an empty view if none)."""
    if files:
        source = _parquet_source(con, "events", files)
        where = (window or TimeRange()).where()
        if exclude is not None:
            where = f"{where} AND {exclude.where(con)}"
        con.execute(f"CREATE OR REPLACE VIEW events AS SELECT * FROM {source} WHERE {where}")
    else:
        con.execute(
            "CREATE OR REPLACE VIEW events AS SELECT NULL::TIMESTAMPTZ AS event_time, "
            "NULL::VARCHAR AS event_type, NULL::BIGINT AS product_id, NULL::BIGINT AS category_id,"
            " NULL::VARCHAR AS category_code, NULL::VARCHAR AS brand, NULL::DOUBLE AS price, "
            "NULL::BIGINT AS user_id, NULL::VARCHAR AS user_session WHERE FALSE"
        )


def _listing(files: Sequence[str]) -> str:
    return ", ".join("'" + f.replace("'", "''") + "'" for f in files)


def define_rollup_views(
    con: duckdb.DuckDBPyConnection, files: dict[str, list[str]], window: TimeRange | None = None
) -> bool:
    """One view per rollup over its committed files, limited to the window's hours, and the
    `session_flags` table. False, with nothing defined, when a window is asked for and some
    rollup rows know no hour (files written before every rollup was keyed by hour)."""
    sources = {name: _parquet_source(con, name, paths) for name, paths in files.items()}
    if window is not None and not all(_knows_hours(con, s) for s in sources.values()):
        return False
    where = (window or TimeRange()).where("hour")
    for name, source in sources.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {source} WHERE {where}")
    _session_flags(con)
    return True


def _knows_hours(con: duckdb.DuckDBPyConnection, source: str) -> bool:
    columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    if "hour" not in columns:
        return False
    unknown = con.execute(f"SELECT count(*) FROM {source} WHERE hour IS NULL").fetchone()
    return unknown is not None and unknown[0] == 0


def _session_flags(con: duckdb.DuckDBPyConnection) -> None:
    """How far each session got, over the rollup hours in view (ROLLUP_SQL reads it)."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE session_flags AS
        SELECT user_session, bool_or(viewed) AS viewed, bool_or(carted) AS carted,
               bool_or(bought) AS bought
        FROM hour_session WHERE user_session IS NOT NULL GROUP BY 1"""
    )


def lake_report(
    table: EventTable,
    window: TimeRange | None = None,
    *,
    use_rollups: bool = True,
    exclude: Flagged | None = None,
) -> dict[str, Any]:
    """The report over a lake: from its rollups when every commit has them and the window (if
    any) is on whole UTC hours, otherwise from the raw events (always when flagged traffic is
    excluded)."""
    con = connect()
    rejected = total_rejected(table.last_checkpoint())
    hourly = window is None or window.on_whole_hours()
    rollups = table.rollup_files() if use_rollups and hourly and exclude is None else None
    if rollups and all(rollups.values()) and define_rollup_views(con, rollups, window):
        data = build_report(con, rejected=rejected, sql=ROLLUP_SQL)
        define_lake_view(con, table.data_files(), window)  # the web section reads raw events
    elif exclude is None:
        define_lake_view(con, table.data_files(), window)
        data = build_report(con, rejected=rejected)
    else:
        define_lake_view(con, table.data_files(), window)
        everything = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        define_lake_view(con, table.data_files(), window, exclude)
        data = build_report(con, rejected=rejected)
        data["excluded_flagged_events"] = (
            everything - con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        )
    web = web_section(con)
    if web is not None:
        data["web"] = web
    return data


def define_csv_view(con: duckdb.DuckDBPyConnection, csv_path: str) -> None:
    """The same `events` view straight over a REES46 CSV (the benchmark's baseline)."""
    path = csv_path.replace("'", "''")
    con.execute(
        f"""CREATE OR REPLACE VIEW events AS
        SELECT strptime(event_time, '%Y-%m-%d %H:%M:%S UTC')::TIMESTAMP AT TIME ZONE 'UTC'
                   AS event_time,
               event_type, product_id::BIGINT AS product_id, category_id::BIGINT AS category_id,
               category_code, brand, price::DOUBLE AS price, user_id::BIGINT AS user_id,
               user_session
        FROM read_csv('{path}', header = true, all_varchar = true)"""
    )


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def build_report(
    con: duckdb.DuckDBPyConnection, *, rejected: int = 0, sql: dict[str, str] = RAW_SQL
) -> dict[str, Any]:
    """Run every query and shape the report (see README: Analytics).

    `sql` is RAW_SQL (over an `events` view) or ROLLUP_SQL (over the rollup views).
    """
    t = con.execute(sql["totals"]).fetchone()
    assert t is not None
    totals = {
        "events": t[0],
        "by_type": {"view": t[1], "cart": t[2], "remove_from_cart": t[3], "purchase": t[4]},
        "users": t[5],
        "sessions": t[6],
        "revenue": float(t[7]),
        "first_event": _iso(t[8]),
        "last_event": _iso(t[9]),
        "rejected": rejected,
    }
    hourly = [
        {
            "hour": _iso(r[0]),
            "events": r[1],
            "views": r[2],
            "carts": r[3],
            "removes": r[4],
            "purchases": r[5],
            "users": r[6],
            "sessions": r[7],
        }
        for r in con.execute(sql["hourly"]).fetchall()
    ]
    f = con.execute(sql["funnel"]).fetchone()
    assert f is not None
    funnel = {
        "sessions_view": f[0],
        "sessions_cart": f[1],
        "sessions_purchase": f[2],
        "view_to_cart": _ratio(f[1], f[0]),
        "cart_to_purchase": _ratio(f[2], f[1]),
        "view_to_purchase": _ratio(f[2], f[0]),
    }
    return {
        "totals": totals,
        "hourly": hourly,
        "funnel": funnel,
        "cart_abandonment": _abandonment(con, sql),
        "categories": _per_key(con, sql, "category_code", "category"),
        "top_level_categories": _per_key(con, sql, "split_part(category_code, '.', 1)", "category"),
        "brands": _per_key(con, sql, "brand", "brand"),
        "top_products": _top_products(con, sql),
    }


def _abandonment(con: duckdb.DuckDBPyConnection, sql: dict[str, str]) -> dict[str, Any]:
    carted_row = con.execute(sql["carted"]).fetchone()
    carted = int(carted_row[0]) if carted_row else 0
    rows = con.execute(sql["abandonment"].format(top=TOP_ABANDONED)).fetchall()
    total = next(r for r in rows if r[0] == "total")
    abandoned = int(total[2] or 0)

    def top(kind: str, label: str) -> list[dict[str, Any]]:
        return [
            {label: r[1], "abandoned_sessions": r[2], "abandoned_value": round(float(r[3] or 0), 2)}
            for r in rows
            if r[0] == kind
        ]

    return {
        "carted_sessions": carted,
        "abandoned_sessions": abandoned,
        "rate": _ratio(abandoned, carted),
        "abandoned_value": round(float(total[3] or 0), 2),
        "top_categories": top("category", "category"),
        "top_brands": top("brand", "brand"),
    }


def _per_key(
    con: duckdb.DuckDBPyConnection, sql: dict[str, str], key_sql: str, label: str
) -> list[dict[str, Any]]:
    rows = con.execute(sql["per_key"].format(key=key_sql)).fetchall()
    return [
        {
            label: r[0],
            "views": r[1],
            "carts": r[2],
            "purchases": r[3],
            "revenue": float(r[4]),
            "conversion": _ratio(r[3], r[1]),
            "buyers": r[5],
        }
        for r in rows
    ]


def _top_products(
    con: duckdb.DuckDBPyConnection, sql: dict[str, str]
) -> dict[str, list[dict[str, Any]]]:
    con.execute(f"CREATE OR REPLACE TEMP TABLE report_products AS {sql['products']}")
    base = "SELECT * FROM report_products"
    columns = ("product_id", "views", "purchases", "revenue", "category", "brand")

    def top(order: str) -> list[dict[str, Any]]:
        sql = f"SELECT * FROM ({base}) ORDER BY {order}, product_id LIMIT {TOP_N}"
        return [dict(zip(columns, r, strict=True)) for r in con.execute(sql).fetchall()]

    return {"by_revenue": top("revenue DESC"), "by_views": top("views DESC")}
