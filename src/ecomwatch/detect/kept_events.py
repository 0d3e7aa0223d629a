"""The events the detector keeps for its windows: Arrow tables, scanned in place by DuckDB.

Inserting every batch into a DuckDB table cost more than all the rules' queries together (its
strings are copied row by row); keeping the batches' own Arrow columns costs nothing, and a
query reads only the tables that reach its time range. Small batches (a live service sends one
every few hundred milliseconds) are merged as they age, so a window spans few tables.

A table leaves when its newest event is older than the longest retention of any rule; rules
with long windows and narrow filters (search engines, 1 h) keep only their own rows beyond the
retention of the others: a table is filtered once each time it crosses such a boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.detect.features import EVENT_CODES
from ecomwatch.schema import LABEL_TYPE, dictionary_chunks

KEPT_SCHEMA = pa.schema(
    [
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("event_type", LABEL_TYPE),
        ("product_id", pa.int64()),
        ("category_id", pa.int64()),
        ("price", pa.float64()),
        ("user_session", pa.string()),
        ("user_id", pa.int64()),
        ("ip", LABEL_TYPE),
        ("user_agent", LABEL_TYPE),
        ("declared_bot", pa.bool_()),
        ("search_engine", pa.bool_()),
        ("t_us", pa.int64()),
        ("seq", pa.int64()),
        # integer keys of ip, subnet and user_agent (`entity_keys`), for grouping
        ("ip_key", pa.uint64()),
        ("subnet_key", pa.uint64()),
        ("agent_key", pa.uint64()),
        # web requests (null or 0 for a shop's own events): status, what the request is
        # (`web_flags.WebFlag` bits) and the path's key, for distinct paths
        ("status", pa.int16()),
        ("web_flags", pa.int32()),
        ("path_key", pa.uint64()),
        # the product's popularity when the event happened (`product_popularity`; null when
        # unknown or no rule reads it)
        ("popularity", pa.float32()),
        # the event's type as a number (`features.EVENT_CODES`), which the queries compare
        ("event_code", pa.int8()),
    ]
)
# Columns added after the first checkpoints: a restored table without them gets nulls.
LATER_KEPT = ("status", "web_flags", "path_key", "popularity")
MERGE_UP_TO_ROWS = 32_768  # tables are merged while the result stays at most this long


@dataclass
class KeptTable:
    table: pa.Table
    first_us: int
    last_us: int
    tier: int = 0  # how many retention boundaries its rows were filtered at


@dataclass(frozen=True)
class Retention:
    """Rows passing `filter_sql` are needed until `seconds` after their event time."""

    seconds: int
    filter_sql: str


@dataclass
class KeptEvents:
    retentions: list[Retention]
    tables: list[KeptTable] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return sum(kept.table.num_rows for kept in self.tables)

    def append(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if table.schema != KEPT_SCHEMA:
            table = table.cast(KEPT_SCHEMA)
        times = table["t_us"]
        self.tables.append(KeptTable(table, pc.min(times).as_py(), pc.max(times).as_py()))
        # Merge the newest tables while the one before is no longer than the new one: the
        # table count stays logarithmic in the rows, each row is copied a few times at most.
        while len(self.tables) >= 2:
            older, newer = self.tables[-2], self.tables[-1]
            rows = older.table.num_rows + newer.table.num_rows
            if older.table.num_rows > newer.table.num_rows or rows > MERGE_UP_TO_ROWS:
                break
            merged = pa.concat_tables([older.table, newer.table]).combine_chunks()
            self.tables[-2:] = [
                KeptTable(
                    merged,
                    min(older.first_us, newer.first_us),
                    max(older.last_us, newer.last_us),
                    min(older.tier, newer.tier),
                )
            ]

    def since(self, first_us: int) -> pa.Table:
        """Every kept event of the tables holding events at or after `first_us` (a query
        still filters on t_us: a table may hold older events too)."""
        reached = [kept.table for kept in self.tables if kept.last_us >= first_us]
        return pa.concat_tables(reached) if reached else KEPT_SCHEMA.empty_table()

    def evict(self, watermark_us: int, con: duckdb.DuckDBPyConnection) -> None:
        """Drop what no rule needs any more at this watermark (see the module docstring)."""
        boundaries = self._boundaries()
        kept: list[KeptTable] = []
        for table in self.tables:
            passed = sum(1 for s in boundaries if table.last_us < watermark_us - s * 1_000_000)
            if passed == len(boundaries):
                continue  # every rule is done with it
            if passed > table.tier:
                table = self._filtered(table, watermark_us, con, passed)
                if not table.table.num_rows:
                    continue
            kept.append(table)
        self.tables = kept

    def _boundaries(self) -> list[int]:
        """Ages (seconds) past which fewer rows are needed: the longest retention, and each
        shorter one unless a rule that sees every row still needs them."""
        every_row = [r.seconds for r in self.retentions if r.filter_sql == "TRUE"]
        longest_every_row = max(every_row, default=0)
        ages = sorted({r.seconds for r in self.retentions})
        return [s for s in ages if s >= longest_every_row]

    def _filtered(
        self, kept: KeptTable, watermark_us: int, con: duckdb.DuckDBPyConnection, tier: int
    ) -> KeptTable:
        keep = " OR ".join(
            f"(t_us >= {watermark_us - r.seconds * 1_000_000} AND {r.filter_sql})"
            for r in self.retentions
        )
        con.register("aging", kept.table)
        table = con.sql(f"SELECT * FROM aging WHERE {keep}").to_arrow_table()
        con.unregister("aging")
        return KeptTable(table.cast(KEPT_SCHEMA), kept.first_us, kept.last_us, tier)


def event_codes(event_type: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each event's type as its number (`features.EVENT_CODES`; null for a type not known),
    looked up once per dictionary value."""
    known = pa.array(list(EVENT_CODES), pa.string())
    chunks = [
        pc.index_in(chunk.dictionary.cast(pa.string()), known).take(chunk.indices).cast(pa.int8())
        for chunk in dictionary_chunks(event_type)
    ]
    return pa.chunked_array(chunks, pa.int8())
