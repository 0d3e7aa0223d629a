"""A round's queries through the DB-API: the same rows as the relation API, no warning."""

from __future__ import annotations

import warnings

import duckdb
import pyarrow as pa

from ecomwatch.detect.round_query import round_rows


def test_round_rows_match_the_relation_api_and_warn_nothing():
    con = duckdb.connect()
    con.register("events", pa.table({"ip": ["a", "b", "a", None], "n": [1, 2, 3, 4]}))
    query = "SELECT ip, sum(n) AS n FROM events WHERE ip IS NOT NULL GROUP BY ip ORDER BY ip"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        rows = round_rows(con, query)
    assert rows.equals(con.sql(query).to_arrow_table())
    assert rows.to_pylist() == [{"ip": "a", "n": 4}, {"ip": "b", "n": 2}]
