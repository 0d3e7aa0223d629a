"""Write simulated traffic as CSV (optionally .gz), Parquet or JSON Lines, by file extension."""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ecomwatch.parallel import ordered_parallel
from ecomwatch.sources.files import InputFormat, detect_format


def _price_text(cents: pa.ChunkedArray) -> pa.Array:
    """Cents to '123.45' exactly (no float formatting)."""
    whole = pc.cast(pc.divide(cents, 100), pa.string())
    frac = pc.utf8_lpad(
        pc.cast(pc.subtract(cents, pc.multiply(pc.divide(cents, 100), 100)), pa.string()), 2, "0"
    )
    return pc.binary_join_element_wise(whole, frac, ".")


def as_text_table(table: pa.Table) -> pa.Table:
    """The REES46 CSV rendering: times like `2019-11-01 00:00:00 UTC`, prices with cents."""
    columns = {}
    for name in table.column_names:
        column = table[name]
        if name == "event_time":
            # Casting naive seconds to text gives "2019-11-01 00:00:00", far faster than strftime.
            naive = column.cast(pa.timestamp("s", tz="UTC")).cast(pa.timestamp("s"))
            column = pc.binary_join_element_wise(naive.cast(pa.string()), " UTC", "")
        elif name == "price_cents":
            name, column = "price", _price_text(column)
        columns[name] = column
    order = [n if n != "price_cents" else "price" for n in table.column_names]
    return pa.table({n: columns[n] for n in order})


def as_typed_table(table: pa.Table) -> pa.Table:
    """Typed columns (for Parquet): prices in currency units, labels as plain strings."""
    columns = {}
    for name in table.column_names:
        column = table[name]
        if name == "price_cents":
            name, column = "price", pc.divide(pc.cast(column, pa.float64()), 100.0)
        elif pa.types.is_dictionary(column.type):
            column = column.cast(pa.string())
        columns[name] = column
    return pa.table(columns)


def _csv_field(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Quote a text field only where CSV needs it (a comma or a quote inside)."""
    if pa.types.is_dictionary(column.type):
        # Quote each distinct value once, then expand.
        return pa.chunked_array(
            [
                _quote(chunk.dictionary.cast(pa.string())).take(chunk.indices)
                for chunk in column.chunks
            ],
            pa.string(),
        )
    return pa.chunked_array(
        [_quote(chunk.cast(pa.string())) for chunk in column.chunks], pa.string()
    )


def _quote(text: pa.Array) -> pa.Array:
    needs = pc.match_substring_regex(text, r'[,"\n]')
    if not pc.any(needs).as_py():
        return text
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, text)


def csv_lines(text: pa.Table) -> bytes:
    """The table as CSV rows, joined by pyarrow (no per-row Python): empty fields for nulls."""
    fields = [_csv_field(text[name]) for name in text.column_names]
    lines = pc.binary_join_element_wise(*fields, ",", null_handling="replace", null_replacement="")
    newline = pc.binary_join_element_wise(lines, "\n", "")
    return b"".join(_string_bytes(chunk) for chunk in newline.chunks)


def _string_bytes(array: pa.Array) -> bytes:
    """The concatenated values of a string array without nulls: its data buffer, sliced."""
    _, offsets_buffer, data = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[
        array.offset : array.offset + len(array) + 1
    ]
    return memoryview(data)[offsets[0] : offsets[-1]].tobytes()


def _text_names(table: pa.Table) -> list[str]:
    return ["price" if n == "price_cents" else n for n in table.column_names]


def _csv_chunk(table: pa.Table) -> tuple[pa.Table, bytes]:
    return table, csv_lines(as_text_table(table))


def write_traffic(tables: Iterable[pa.Table], out: Path) -> int:
    """Write every table to `out`; return the number of rows written."""
    fmt, compressed = detect_format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    if fmt is InputFormat.PARQUET:
        writer: pq.ParquetWriter | None = None
        for table in tables:
            typed = as_typed_table(table)
            if writer is None:
                writer = pq.ParquetWriter(out, typed.schema, compression="zstd")
            writer.write_table(typed)
            rows += table.num_rows
        if writer is not None:
            writer.close()
        return rows
    sink = pa.OSFile(str(out), "wb")
    stream = pa.CompressedOutputStream(sink, "gzip") if compressed else sink
    try:
        if fmt is InputFormat.JSONL:
            for table in tables:
                text = as_text_table(table)
                records = (json.dumps(row) for row in text.to_pylist())
                stream.write(("\n".join(records) + "\n").encode())
                rows += table.num_rows
            return rows
        header_written = False
        with ThreadPoolExecutor(2, thread_name_prefix="format") as pool:
            for table, lines in ordered_parallel(iter(tables), _csv_chunk, pool, 3):
                if not header_written:
                    stream.write((",".join(_text_names(table)) + "\n").encode())
                    header_written = True
                stream.write(lines)
                rows += table.num_rows
        return rows
    finally:
        stream.close()
