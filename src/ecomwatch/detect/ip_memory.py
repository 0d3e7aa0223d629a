"""When each IP was first and last seen, for the `ip_age_s` feature (a botnet's IPs are new).

One row per IP and batch is appended (grouped in Arrow on the batch's dictionary indices, so no
string is hashed per event); the parts are merged to one row per IP when a query needs them.
IPs not seen for `memory_s` are forgotten.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.schema import dictionary_chunks

SEEN_SCHEMA = pa.schema(
    [("seen_ip", pa.string()), ("first_us", pa.int64()), ("last_us", pa.int64())]
)


class IpMemory:
    def __init__(self, memory_s: int) -> None:
        self.memory_s = memory_s
        self._parts: list[pa.Table] = []

    def add(self, ips: pa.ChunkedArray, times_us: pa.ChunkedArray) -> None:
        offset = 0
        for chunk in dictionary_chunks(ips):
            times = times_us.slice(offset, len(chunk))
            offset += len(chunk)
            grouped = (
                pa.table({"i": chunk.indices, "t": times})
                .filter(pc.is_valid(chunk.indices))
                .group_by("i")
                .aggregate([("t", "min"), ("t", "max")])
            )
            self._parts.append(
                pa.table(
                    [
                        chunk.dictionary.cast(pa.string()).take(grouped["i"]),
                        grouped["t_min"],
                        grouped["t_max"],
                    ],
                    schema=SEEN_SCHEMA,
                )
            )

    def table(self) -> pa.Table:
        """One row per IP."""
        if len(self._parts) != 1:
            merged = pa.concat_tables(self._parts) if self._parts else SEEN_SCHEMA.empty_table()
            grouped = merged.group_by("seen_ip").aggregate(
                [("first_us", "min"), ("last_us", "max")]
            )
            self._parts = [
                pa.table(
                    [grouped["seen_ip"], grouped["first_us_min"], grouped["last_us_max"]],
                    schema=SEEN_SCHEMA,
                )
            ]
        return self._parts[0]

    def forget(self, watermark_us: int) -> None:
        seen = self.table()
        self._parts = [
            seen.filter(pc.greater_equal(seen["last_us"], watermark_us - self.memory_s * 1_000_000))
        ]

    def restore(self, table: pa.Table) -> None:
        self._parts = [table.cast(SEEN_SCHEMA)]
