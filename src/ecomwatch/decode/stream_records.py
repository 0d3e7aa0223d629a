"""Kinesis records as events: each record holds one JSON event, a JSON array of events or NDJSON
lines (gzip-compressed or not), in the collector's body schema; KPL-aggregated records are taken
apart first.

An event's identity (the lake's record key, for events without an `event_id`) is the record's
`key` (stream, shard, sequence number and, inside an aggregated record, sub-sequence number) as
the event's `source`, and its index inside the record as `source_pos`. A record that cannot be
read as a whole (damaged gzip or aggregation) is one rejected row; an event that fails
validation is one rejected row; so `read = accepted + rejected` holds per record.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ecomwatch.decode.json_rows import RowsError, parse_rows, read_ndjson_table
from ecomwatch.decode.jsonl_decoder import BadRecord, decode_records
from ecomwatch.decode.kpl import AggregationError, deaggregate, is_aggregated
from ecomwatch.decode.rejects import RejectReason, empty_rejects, rejects_table
from ecomwatch.decode.validate import Decoded, empty_decoded, repairs_of, validate
from ecomwatch.schema import LABEL_TYPE

MAX_RECORD_TEXT = 64 << 20  # a record of at most 1 MiB may not unpack to more than this
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class StreamRecord:
    """One record as read from a shard: its identity and its bytes."""

    key: str  # e.g. "kinesis:clicks/shardId-000000000001/4968…"
    data: bytes


@dataclass(frozen=True)
class _Unpacked:
    key: str
    text: bytes | None  # None: the record could not be read
    problem: str = ""
    raw: bytes = b""  # the record's bytes, when it could not be read


def decode_stream_records(records: Sequence[StreamRecord]) -> Decoded:
    """Every record's events, validated; rejects name their record in `source` and their index
    inside it in `line`."""
    unpacked = [part for record in records for part in _unpack(record)]
    if not unpacked:
        return empty_decoded()
    readable = [u for u in unpacked if u.text is not None]
    fast = [u for u in readable if _fast_candidate(u.text)]  # type: ignore[arg-type]
    decoded, keys, within = _decode_fast(fast)
    if decoded is None:
        fast = []
        decoded, keys, within = empty_decoded(), [], np.empty(0, dtype=np.int64)
    fast_ids = {id(u) for u in fast}
    slow = [u for u in readable if id(u) not in fast_ids]
    parts = [(decoded, keys, within)]
    if slow:
        parts.append(_decode_slow(slow, first=len(keys)))
    broken = [u for u in unpacked if u.text is None]
    return _identified(parts, broken)


def _unpack(record: StreamRecord) -> list[_Unpacked]:
    """The record's payloads: one, or one per sub-record of an aggregated record."""
    if is_aggregated(record.data):
        try:
            subs = deaggregate(record.data)
        except AggregationError as exc:
            return [_Unpacked(record.key, None, str(exc), record.data)]
        return [
            _text(f"{record.key}.{index}", sub.data) for index, sub in enumerate(subs)
        ]  # the sub-record's index is its sub-sequence number
    return [_text(record.key, record.data)]


def _text(key: str, data: bytes) -> _Unpacked:
    if not data.startswith(_GZIP_MAGIC):
        return _Unpacked(key, data)
    try:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        text = inflater.decompress(data, MAX_RECORD_TEXT + 1)
        if not inflater.eof:
            raise EOFError("the gzip stream is truncated")
    except (zlib.error, gzip.BadGzipFile, EOFError) as exc:
        return _Unpacked(key, None, f"the record's gzip data is damaged: {exc}", data)
    if len(text) > MAX_RECORD_TEXT:
        return _Unpacked(
            key, None, f"the record unpacks to more than {MAX_RECORD_TEXT} bytes", data
        )
    return _Unpacked(key, text)


def _fast_candidate(text: bytes) -> bool:
    body = text.strip()
    return body.startswith(b"{") and b"\n\n" not in body and b"\r" not in body


def _decode_fast(
    parts: list[_Unpacked],
) -> tuple[Decoded | None, list[str], np.ndarray]:
    """NDJSON records read by pyarrow in one go; None when any of them needs the slow path."""
    if not parts:
        return empty_decoded(), [], np.empty(0, dtype=np.int64)
    bodies = [u.text.strip() for u in parts]  # type: ignore[union-attr]
    counts = np.array([b.count(b"\n") + 1 for b in bodies], dtype=np.int64)
    table = read_ndjson_table(b"\n".join(bodies))
    if table is None or table.num_rows != int(counts.sum()):
        return None, [], np.empty(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(parts)), counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(table.num_rows, dtype=np.int64) - np.repeat(starts, counts)
    decoded = validate(
        table,
        np.arange(table.num_rows, dtype=np.int64),
        source_name="stream",
        source_id="stream",
        render_raw=lambda i: json.dumps(table.slice(i, 1).to_pylist()[0], default=str),
    )
    return decoded, [parts[i].key for i in owner], within


def _decode_slow(parts: list[_Unpacked], *, first: int) -> tuple[Decoded, list[str], np.ndarray]:
    """Records row by row (arrays, strings for numbers, bad lines): rows numbered from `first`."""
    items: list[tuple[int, dict[str, object] | BadRecord]] = []
    keys: list[str] = []
    within: list[int] = []
    for part in parts:
        try:
            rows = parse_rows(part.text)  # type: ignore[arg-type]
        except RowsError as exc:
            rows = [BadRecord(str(exc), part.text.decode("utf-8", "replace"))]  # type: ignore[union-attr]
        for index, row in enumerate(rows):
            number = first + len(keys)
            if not isinstance(row, BadRecord | dict):
                row = BadRecord("an event must be a JSON object", json.dumps(row))
            items.append((number, row))
            keys.append(part.key)
            within.append(index)
    decoded = decode_records(items, source_name="stream", source_id="stream")
    return decoded, keys, np.array(within, dtype=np.int64)


def _identified(
    parts: list[tuple[Decoded, list[str], np.ndarray]], broken: list[_Unpacked]
) -> Decoded:
    """The parts' events with their record's key as `source` and their index in the record as
    `source_pos`; rejects likewise; a broken record is one reject."""
    keys = [key for _, part_keys, _ in parts for key in part_keys]
    within = np.concatenate([w for _, _, w in parts]) if keys else np.empty(0, dtype=np.int64)
    events = pa.concat_tables([d.events for d, _, _ in parts])
    ordinal = events["source_pos"].to_numpy()
    labels = pa.array(keys, pa.string()).dictionary_encode() if keys else None
    if labels is not None and events.num_rows:
        source = pa.DictionaryArray.from_arrays(
            labels.indices.take(pa.array(ordinal)), labels.dictionary
        ).cast(LABEL_TYPE)
        events = events.set_column(
            events.schema.get_field_index("source"), "source", source
        ).set_column(
            events.schema.get_field_index("source_pos"), "source_pos", pa.array(within[ordinal])
        )
    rejects = [d.rejects for d, _, _ in parts if d.rejects.num_rows]
    named: list[pa.Table] = []
    for table in rejects:
        lines = table["line"].to_numpy()
        named.append(
            rejects_table(
                [keys[i] for i in lines],
                [int(within[i]) for i in lines],
                table["reason"].to_pylist(),
                table["detail"].to_pylist(),
                table["raw"].to_pylist(),
            )
        )
    if broken:
        named.append(
            rejects_table(
                [u.key for u in broken],
                [0] * len(broken),
                [RejectReason.UNDECODABLE_RECORD.value] * len(broken),
                [u.problem for u in broken],
                # The record's bytes, base64-encoded, so that it can be recovered.
                [base64.b64encode(u.raw).decode() for u in broken],
            )
        )
    repaired = repairs_of([decoded for decoded, _, _ in parts])
    return Decoded(events, pa.concat_tables(named) if named else empty_rejects(), repaired)
