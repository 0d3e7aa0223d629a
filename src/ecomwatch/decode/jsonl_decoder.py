"""JSON events: JSON Lines files (one object per line), or records a collector received."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ecomwatch.decode.chunks import TextChunk
from ecomwatch.decode.rejects import RejectReason, rejects_table
from ecomwatch.decode.validate import Decoded, validate
from ecomwatch.schema import INPUT_COLUMNS


@dataclass(frozen=True)
class BadRecord:
    """A record that is not a JSON object: why, and its text."""

    detail: str
    raw: str


def decode_jsonl_chunk(chunk: TextChunk, *, source_name: str, source_id: str) -> Decoded:
    """Each non-blank line must be a JSON object; its known keys become columns."""
    items: list[tuple[int, dict[str, object] | BadRecord]] = []
    for index, raw_line in enumerate(chunk.data.split(b"\n")):
        line = raw_line.rstrip(b"\r")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a JSON Lines row must be an object")
        except (ValueError, UnicodeDecodeError) as exc:
            text = line.decode("utf-8", "backslashreplace")
            items.append((chunk.first_line + index, BadRecord(f"not a JSON object: {exc}", text)))
            continue
        items.append((chunk.first_line + index, record))
    return decode_records(items, source_name=source_name, source_id=source_id)


def decode_records(
    items: Iterable[tuple[int, dict[str, object] | BadRecord]],
    *,
    source_name: str,
    source_id: str,
) -> Decoded:
    """Records numbered by their line (or position in a request), validated like CSV rows.

    Values are kept as text (numbers included) and typed by the shared validator, so a JSON
    record and a CSV row with the same content give the same event.
    """
    columns: dict[str, list[str | None]] = {name: [] for name in INPUT_COLUMNS}
    positions: list[int] = []
    bad_lines: list[int] = []
    bad_details: list[str] = []
    bad_raw: list[str] = []
    for number, record in items:
        if isinstance(record, BadRecord):
            bad_lines.append(number)
            bad_details.append(record.detail)
            bad_raw.append(record.raw)
            continue
        positions.append(number)
        for name in INPUT_COLUMNS:
            value = record.get(name)
            columns[name].append(None if value is None else str(value))
    present = [name for name in INPUT_COLUMNS if any(v is not None for v in columns[name])]
    for name in INPUT_COLUMNS[:9]:
        if name not in present:
            present.append(name)
    table = pa.table({name: pa.array(columns[name], pa.string()) for name in present})
    decoded = validate(
        table,
        np.array(positions, dtype=np.int64),
        source_name=source_name,
        source_id=source_id,
        render_raw=lambda i: json.dumps({k: columns[k][i] for k in present}),
    )
    if not bad_lines:
        return decoded
    bad = rejects_table(
        source_name,
        bad_lines,
        [RejectReason.BAD_JSON.value] * len(bad_lines),
        bad_details,
        bad_raw,
    )
    rejects = pa.concat_tables([decoded.rejects, bad]).sort_by("line")
    return Decoded(decoded.events, rejects, decoded.repaired)
