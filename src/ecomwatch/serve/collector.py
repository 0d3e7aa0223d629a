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

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.decode.jsonl_decoder import BadRecord, decode_records
from ecomwatch.decode.validate import Decoded


class BodyError(ValueError):
    """The request body as a whole cannot be read (the client gets 400 or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 10 << 20  # after decompression too
    max_batch_rows: int = 10_000


def read_body(body: bytes, *, encoding: str | None, limits: Limits) -> list[Any]:
    """The request's rows: a JSON array, or one JSON value per line (NDJSON)."""
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
    text = body.lstrip()
    if text.startswith(b"["):
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise BodyError(f"the body is not a valid JSON array: {exc}") from exc
    else:
        rows = []
        for line in text.split(b"\n"):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                rows.append(BadRecord(f"not JSON: {exc}", line.decode("utf-8", "replace")))
    if len(rows) > limits.max_batch_rows:
        raise BodyError(
            f"{len(rows)} rows in one request; the limit is {limits.max_batch_rows}", 413
        )
    return rows


class Numbering:
    """Collector-wide row positions (thread-safe), for record keys of rows without event_id."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def take(self, rows: int) -> int:
        with self._lock:
            first, self._next = self._next, self._next + rows
        return first


def decode_request(
    rows: list[Any], *, source_id: str, first_position: int, request_id: str
) -> Decoded:
    """Validate the rows; events carry their collector-wide position, rejects their index."""
    items: list[tuple[int, dict[str, object] | BadRecord]] = []
    for index, row in enumerate(rows):
        if isinstance(row, BadRecord | dict):
            items.append((index, row))
        else:
            items.append((index, BadRecord("a row must be a JSON object", json.dumps(row))))
    decoded = decode_records(items, source_name=f"http request {request_id}", source_id=source_id)
    positions = pc.add(decoded.events["source_pos"], first_position)
    index = decoded.events.schema.get_field_index("source_pos")
    events = decoded.events.set_column(index, "source_pos", positions.cast(pa.int64()))
    return Decoded(events, decoded.rejects, decoded.repaired)
