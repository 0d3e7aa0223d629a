"""When each IP was first and last seen, for the `ip_age_s` feature (a botnet's IPs are new).

IPs are held by their integer key (`entity_keys.address_keys`, as in the kept events), so the
rules' queries join on a number, not a string. One row per key and batch is appended; the parts
are merged to one row per key when a query needs them. IPs not seen for `memory_s` are
forgotten.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.detect.entity_keys import address_keys

SEEN_SCHEMA = pa.schema(
    [("seen_key", pa.uint64()), ("first_us", pa.int64()), ("last_us", pa.int64())]
)


def _one_row_per_key(keys: pa.ChunkedArray | pa.Array, first: pa.Array, last: pa.Array) -> pa.Table:
    grouped = (
        pa.table({"k": keys, "first": first, "last": last})
        .filter(pc.is_valid(keys))
        .group_by("k")
        .aggregate([("first", "min"), ("last", "max")])
    )
    return pa.table([grouped["k"], grouped["first_min"], grouped["last_max"]], schema=SEEN_SCHEMA)


class IpMemory:
    def __init__(self, memory_s: int) -> None:
        self.memory_s = memory_s
        self._parts: list[pa.Table] = []

    def add(self, ip_keys: pa.ChunkedArray, times_us: pa.ChunkedArray) -> None:
        self._parts.append(_one_row_per_key(ip_keys, times_us, times_us))

    def table(self) -> pa.Table:
        """One row per IP key."""
        if len(self._parts) != 1:
            merged = pa.concat_tables(self._parts) if self._parts else SEEN_SCHEMA.empty_table()
            self._parts = [
                _one_row_per_key(merged["seen_key"], merged["first_us"], merged["last_us"])
            ]
        return self._parts[0]

    def forget(self, watermark_us: int) -> None:
        seen = self.table()
        self._parts = [
            seen.filter(pc.greater_equal(seen["last_us"], watermark_us - self.memory_s * 1_000_000))
        ]

    def restore(self, table: pa.Table) -> None:
        if "seen_ip" in table.column_names:  # written by earlier versions: addresses as text
            keys, _ = address_keys(table["seen_ip"].cast(pa.string()).dictionary_encode())
            table = _one_row_per_key(keys, table["first_us"], table["last_us"])
        self._parts = [table.cast(SEEN_SCHEMA)]
