"""A small testing kit so that tests of every module read the same way.

- `MemorySource`: a source over CSV text held in memory, decoded by the real decoder.
- `MemoryCommitter`: keeps committed checkpoints in a list.
- `events_table`: an EVENT_SCHEMA table from row dicts.
- `FakeClock` (re-exported): a clock the test moves by hand.
- `rees46_csv`: CSV text from row dicts, in the REES46 column order.
"""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from ecomwatch.decode.chunks import iter_chunks
from ecomwatch.decode.csv_decoder import decode_csv_chunk, sniff_layout
from ecomwatch.decode.validate import empty_decoded
from ecomwatch.engine.operator import settle, unsettled
from ecomwatch.engine.watermark import FakeClock
from ecomwatch.schema import EVENT_SCHEMA, REES46_COLUMNS
from ecomwatch.sources.base import Position, SourceBatch

__all__ = ["FakeClock", "MemoryCommitter", "MemorySource", "events_table", "rees46_csv"]


def rees46_csv(
    rows: Iterable[dict[str, Any]], *, extra: tuple[str, ...] = ("ip", "user_agent")
) -> str:
    """CSV text (quoted where needed) with the REES46 columns and `extra`; None → empty."""
    columns = [*REES46_COLUMNS, *extra]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return out.getvalue()


class MemorySource:
    """CSV text in memory, read in chunks of `chunk_bytes` like a file."""

    def __init__(
        self, text: str | bytes, *, source_id: str = "mem", chunk_bytes: int = 1 << 16
    ) -> None:
        self.data = text.encode() if isinstance(text, str) else text
        self.name = f"memory:{source_id}"
        self.source_id = source_id
        self.size = len(self.data)
        self.chunk_bytes = chunk_bytes

    def read(self, start: Position) -> Iterator[SourceBatch]:
        if start.done:
            return
        first = self.data.split(b"\n", 1)[0] + b"\n"
        layout = sniff_layout(first)
        offset, line = start.offset, start.line
        if offset == 0 and layout.has_header:
            offset, line = len(first), 2
        stream = io.BytesIO(self.data)
        stream.seek(offset)
        last = Position(offset, line)
        for chunk in iter_chunks(
            stream, offset=offset, first_line=line, chunk_bytes=self.chunk_bytes
        ):
            decoded = decode_csv_chunk(
                chunk, layout, source_name=self.name, source_id=self.source_id
            )
            last = Position(chunk.end_offset, chunk.next_line)
            yield SourceBatch(decoded, last, chunk.end_offset)
        yield SourceBatch(empty_decoded(), Position(last.offset, last.line, done=True), self.size)


class MemoryCommitter:
    """A committer that keeps every checkpoint in a list (no data: operators hold their own)."""

    def __init__(self) -> None:
        self.checkpoints: list[dict[str, Any]] = []

    def load(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.checkpoints[-1]) if self.checkpoints else None

    def commit(self, checkpoint: dict[str, Any]) -> None:
        ready, later = unsettled(checkpoint)
        self.checkpoints.append(settle(copy.deepcopy(ready), later))

    def flush(self) -> None:
        return None


def events_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Events in EVENT_SCHEMA from row dicts (missing columns null)."""
    columns = {name: [r.get(name) for r in rows] for name in EVENT_SCHEMA.names}
    return pa.table(
        {
            f.name: pa.array(
                columns[f.name], f.type.value_type if pa.types.is_dictionary(f.type) else f.type
            )
            for f in EVENT_SCHEMA
        }
    ).cast(EVENT_SCHEMA)
