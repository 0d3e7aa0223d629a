"""Rollups: small aggregate tables written with every lake commit, so reports need not rescan.

Each commit's events are pre-aggregated (DuckDB over the Arrow batch, zero-copy) into the tables
below. Every report figure is an exact merge of them — sums of counts and revenues, distinct
counts over the kept keys, boolean ORs per session — so a report over rollups equals the same
report over the raw events (`tests/analytics` checks this). Every one is keyed by UTC hour, so a
report window on whole hours reads them too (files written before `item`, `session_cart` and
`buyer` had their hour make such a report read the raw events); any other window reads the raw
events.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

# The UTC hour of an event, from its epoch microseconds: several times faster in DuckDB than
# date_trunc('hour', ...) on a TIMESTAMPTZ, which goes through the ICU calendar.
HOUR_OF_EVENT = "make_timestamptz(fdiv(epoch_us(event_time), 3600000000)::BIGINT * 3600000000)"

# name → SQL over the commit's events (`batch`).
ROLLUP_SQL: dict[str, str] = {
    # Counts and revenue per hour and event type; first and last event time.
    "hour_type": """
        SELECT {hour} AS hour, event_type::VARCHAR AS event_type,
               count(*) AS events, sum(price) AS revenue,
               min(event_time) AS first_event, max(event_time) AS last_event
        FROM batch GROUP BY ALL""",
    # Per hour, product (with its category and brand) and event type.
    "item": """
        SELECT {hour} AS hour, product_id, category_code::VARCHAR AS category_code,
               brand::VARCHAR AS brand,
               event_type::VARCHAR AS event_type, count(*) AS events, sum(price) AS revenue
        FROM batch GROUP BY ALL""",
    # Who was active in which hour, in which session, and how far the session got.
    "hour_session": """
        SELECT {hour} AS hour, user_session, user_id,
               bool_or(event_type = 'view') AS viewed, bool_or(event_type = 'cart') AS carted,
               bool_or(event_type = 'purchase') AS bought
        FROM batch GROUP BY ALL""",
    # What each session put in its cart, by hour, category and brand.
    "session_cart": """
        SELECT {hour} AS hour, user_session, category_code::VARCHAR AS category_code,
               brand::VARCHAR AS brand, sum(price) AS cart_value
        FROM batch WHERE event_type = 'cart' AND user_session IS NOT NULL GROUP BY ALL""",
    # Who bought in which hour, category and brand.
    "buyer": """
        SELECT DISTINCT {hour} AS hour, category_code::VARCHAR AS category_code,
               brand::VARCHAR AS brand, user_id
        FROM batch WHERE event_type = 'purchase'""",
}
ROLLUPS: tuple[str, ...] = tuple(ROLLUP_SQL)


def compute_rollups(events: pa.Table) -> dict[str, pa.Table]:
    """The rollup tables of one commit's events."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("batch", events)
        return {
            name: con.sql(sql.format(hour=HOUR_OF_EVENT)).to_arrow_table()
            for name, sql in ROLLUP_SQL.items()
        }
    finally:
        con.close()
