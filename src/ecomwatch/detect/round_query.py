"""A judging round's query results as Arrow, planned once.

`con.sql(query).to_arrow_table()` plans a query twice: once to describe the relation it
returns, once to run it. A round's queries are large plans (every rule's windows in one
statement) over a few thousand rows, where planning is most of the cost: run through the
DB-API instead, one took 39 ms instead of 53 ms, and the detector alone fed 300 five-second
rounds of an attack scenario used 34 to 36 s of CPU instead of 40 to 44 s (three runs each).
DuckDB warns that this path copies the result once more; a round's results are its candidate
and matched windows, a few rows, so the warning is silenced for these calls.
"""

from __future__ import annotations

import warnings

import duckdb
import pyarrow as pa

_COPY_WARNING = "Arrow output on a DB-API result makes an extra copy"


def round_rows(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """The rows of `query`, planned and run once."""
    # The filter is set around the call (one set at import would not survive a test runner's
    # own). `catch_warnings` swaps the process's filter list: should two detectors' threads
    # overlap here, the worst outcome is this one message staying ignored.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_COPY_WARNING, category=UserWarning)
        return con.execute(query).to_arrow_table()
