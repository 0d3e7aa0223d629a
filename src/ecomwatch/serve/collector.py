"""Turning a collector request into decoded events: JSON array or NDJSON, maybe gzipped.

Each row is numbered by its index in the request (0-based, as the client sent it); invalid rows
are reported back with that index and a reason, and kept in the dead-letter output with it.
Valid rows of the same request are accepted. Rows get a collector-wide position so that rows
without an `event_id` still have a unique record key in the lake.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.decode.json_rows import RowsError, parse_rows, read_ndjson_table
from ecomwatch.decode.jsonl_decoder import BadRecord, decode_records
from ecomwatch.decode.validate import Decoded, validate


class BodyError(ValueError):
    """The request body as a whole cannot be read (the client gets 400 or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 10 << 20  # after decompression too
    max_batch_rows: int = 10_000


def decompress(body: bytes, *, encoding: str | None, limits: Limits) -> bytes:
    """The body as sent, gunzipped if it says so (and still within the size limit)."""
    if encoding and encoding.lower() == "gzip":
        try:
            decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            body = decompressor.decompress(body, limits.max_body_bytes + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise BodyError(f"the body is not valid gzip: {exc}") from exc
        if len(body) > limits.max_body_bytes:
            raise BodyError(
                f"the decompressed body exceeds {limits.max_body_bytes} bytes", status=413
            )
    elif encoding and encoding.lower() not in ("identity", ""):
        raise BodyError(f"Content-Encoding {encoding!r} is not supported (use gzip)", 415)
    return body


def read_rows(text: bytes, limits: Limits) -> list[Any]:
    """The request's rows: a JSON array, or one JSON value per line (NDJSON)."""
    try:
        rows = parse_rows(text)
    except RowsError as exc:
        raise BodyError(str(exc)) from exc
    _check_rows(len(rows), limits)
    return rows


def _check_rows(count: int, limits: Limits) -> None:
    if count > limits.max_batch_rows:
        raise BodyError(f"{count} rows in one request; the limit is {limits.max_batch_rows}", 413)


class Numbering:
    """Collector-wide row positions (thread-safe), for record keys of rows without event_id."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def take(self, rows: int) -> int:
        with self._lock:
            first, self._next = self._next, self._next + rows
        return first


def decode_body(
    body: bytes,
    *,
    encoding: str | None,
    limits: Limits,
    numbering: Numbering,
    source_id: str,
    request_id: str,
) -> Decoded:
    """Validate a request's rows; events carry a collector-wide position, rejects their index."""
    text = decompress(body, encoding=encoding, limits=limits)
    source_name = f"http request {request_id}"
    table = read_ndjson_table(text)
    if table is not None:
        _check_rows(table.num_rows, limits)
        decoded = validate(
            table,
            np.arange(table.num_rows, dtype=np.int64),
            source_name=source_name,
            source_id=source_id,
            render_raw=lambda i: json.dumps(table.slice(i, 1).to_pylist()[0], default=str),
        )
    else:
        items: list[tuple[int, dict[str, object] | BadRecord]] = []
        for index, row in enumerate(read_rows(text, limits)):
            if isinstance(row, BadRecord | dict):
                items.append((index, row))
            else:
                items.append((index, BadRecord("a row must be a JSON object", json.dumps(row))))
        decoded = decode_records(items, source_name=source_name, source_id=source_id)
    first = numbering.take(decoded.read)
    positions = pc.add(decoded.events["source_pos"], first)
    index = decoded.events.schema.get_field_index("source_pos")
    events = decoded.events.set_column(index, "source_pos", positions.cast(pa.int64()))
    return Decoded(events, decoded.rejects, decoded.repaired)
