"""The part every web log decoder shares: a request's text fields to EVENT_SCHEMA rows.

A decoder (nginx/Apache, ALB, CloudFront) extracts its fields as text columns; `web_events`
checks them (a time, status and size that parse), classifies each request (page, static, api,
other) and builds the events. A line that fails a check is refused with why, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.decode.chunks import TextChunk
from ecomwatch.decode.rejects import RejectReason, rejects_table
from ecomwatch.schema import EVENT_SCHEMA, TIME_TYPE, EventType, conform, constant, one_array

_REQUEST = (
    r"^(?P<method>[A-Z][A-Z_-]{0,19}) (?P<path>[^?\s]*)(?:\?(?P<query>\S*))?"
    r"(?: HTTP/\d(?:\.\d)?)?$"
)
_STATIC = (
    r"(?i)\.(css|js|mjs|map|png|jpe?g|gif|svg|ico|webp|avif|bmp|tiff?|woff2?|ttf|otf|eot"
    r"|mp4|webm|mp3|ogg|wav|pdf|zip|gz|txt|xml)$"
)
_API = r"(?i)^/(api|wp-json|graphql|rest|ajax)(/|$)|admin-ajax\.php$|\.json$"

Refused = dict[int, tuple[RejectReason, str]]


@dataclass(frozen=True)
class WebFields:
    """One column per field of the requests of a chunk, as text (None: the log has no such
    field). `event_time` is already parsed: null where the text did not parse."""

    event_time: pa.Array
    time_format: str  # what the time should have looked like, for the dead letter
    ip: pa.Array
    status: pa.Array  # text, or int16 already parsed (null: not a number)
    size: pa.Array  # text, or int64 already parsed (null: `-`; below 0: not a number)
    method: pa.Array
    path: pa.Array
    query: pa.Array
    agent: pa.Array | None = None
    referrer: pa.Array | None = None
    host: pa.Array | None = None
    session: pa.Array | None = None  # from a session cookie, when the log has cookies
    kind: pa.Array | None = None  # the request kind, when the decoder classified the requests


def as_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Binary to text; bytes that are not UTF-8 are kept as `\\xHH`, as nginx writes them."""
    array = one_array(column)
    try:
        return array.cast(pa.string())
    except pa.ArrowInvalid:
        values = array.to_pylist()
        return pa.array(
            [None if v is None else v.decode("utf-8", "backslashreplace") for v in values],
            pa.string(),
        )


def chunk_lines(chunk: TextChunk) -> tuple[pa.Array, np.ndarray]:
    """The chunk's non-blank lines (binary, without their line ends) and their physical
    line numbers, split in C++."""
    whole = pa.array([chunk.data], pa.binary())
    lines = pc.list_flatten(pc.split_pattern(whole, b"\n"))
    lines = pc.replace_substring_regex(lines, "\r$", "")
    numbers = np.arange(chunk.first_line, chunk.first_line + len(lines), dtype=np.int64)
    filled = np.asarray(pc.greater(pc.binary_length(lines), 0).to_numpy(False), dtype=bool)
    if filled.all():
        return lines, numbers
    return lines.filter(pa.array(filled)), numbers[filled]


def cookie_value(texts: list[pa.Array], name: str) -> pa.Array:
    """The value of the cookie `name` (ending in `*`: the first cookie whose name starts so)
    in the first of `texts` (Cookie headers, plain or URL-encoded) that holds it; else null."""
    stem = re.escape(name.rstrip("*")) + (r"[^=;\s]*" if name.endswith("*") else "")
    # A value ends at `;`, a space or a quote, plain or URL-encoded (%3B, %20, %22).
    encoded = r"%(?:[014-9A-Fa-f][0-9A-Fa-f]|2[13-9A-Fa-f]|3[0-9AC-Fac-f])"
    pattern = r'(?:^|[;\s"]|%20|%3[Bb])' + stem + r'=(?P<value>(?:[^;\s"%]|' + encoded + ")+)"
    found = [pc.struct_field(pc.extract_regex(text, pattern), "value") for text in texts]
    return found[0] if len(found) == 1 else pc.coalesce(*found)


def parse_iso_utc(stamps: pa.Array) -> pa.Array:
    """`2026-11-30T23:59:59[.123456][Z]` (UTC) as timestamps; null where the text is not such
    a time (a fraction beyond microseconds is cut)."""
    shape = pc.match_substring_regex(stamps, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z?$")
    seconds = pc.strptime(
        pc.utf8_slice_codeunits(stamps, 0, 19),
        format="%Y-%m-%dT%H:%M:%S",
        unit="us",
        error_is_null=True,
    )
    fraction = pc.struct_field(pc.extract_regex(stamps, r"^.{19}\.(?P<f>\d{1,6})"), "f")
    micros = pc.fill_null(pc.utf8_rpad(fraction, 6, "0").cast(pa.int64()), 0)
    at = pc.add(seconds.cast(pa.int64()), micros)
    return pc.if_else(shape, at, pa.scalar(None, pa.int64())).cast(TIME_TYPE)


def dash_to_null(values: pa.Array) -> pa.Array:
    """`-` (a log's empty field) as null."""
    if isinstance(values, pa.DictionaryArray):
        dash = pc.index(values.dictionary, "-").as_py()
        if dash == -1:
            return values
        indices = pc.if_else(pc.equal(values.indices, dash), None, values.indices)
        return pa.DictionaryArray.from_arrays(indices, values.dictionary)
    dashes = pc.equal(values, "-")
    if not pc.any(dashes).as_py():
        return values
    return pc.if_else(dashes, pa.scalar(None, pa.string()), values)


def statuses(status: pa.Array) -> pa.Array:
    """HTTP statuses as int16; null where the text is not a number of up to 3 digits (an
    already parsed column is kept: a value outside 0-999 is refused by `web_events`)."""
    if pa.types.is_integer(status.type):
        return status.cast(pa.int16())
    numeric = pc.match_substring_regex(status, r"^\d{1,3}$")
    return pc.if_else(numeric, status, pa.scalar(None, pa.string())).cast(pa.int16())


def sizes(size: pa.Array) -> pa.Array:
    """Response sizes as int64: null for `-`, -1 where the text is not a number."""
    if pa.types.is_integer(size.type):
        return size.cast(pa.int64())
    numeric = pc.fill_null(pc.match_substring_regex(size, r"^\d{1,18}$"), False)
    dash = pc.fill_null(pc.equal(size, "-"), False)
    text = pc.if_else(numeric, size, pc.if_else(dash, pa.scalar(None, pa.string()), "-1"))
    return text.cast(pa.int64())


def split_request(request: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """`METHOD TARGET [PROTOCOL]` as method, path, query. A request line of another shape (TLS
    bytes sent to the HTTP port) is kept whole in `path` with no method: it is a signal. An
    empty one (`-`, `""`) has no path."""
    split = pc.extract_regex(request, _REQUEST)
    method = pc.struct_field(split, "method")
    whole = pc.if_else(pc.equal(request, ""), pa.scalar(None, pa.string()), dash_to_null(request))
    path = pc.if_else(pc.is_null(method), whole, pc.struct_field(split, "path"))
    return method, path, pc.struct_field(split, "query")


@dataclass(frozen=True)
class Requests:
    """Request lines split and classified: method and kind as labels."""

    method: pa.DictionaryArray
    path: pa.Array
    query: pa.Array
    kind: pa.DictionaryArray


def split_requests(request: pa.Array) -> Requests:
    """`split_request` and `request_kind` of each distinct request line once (a log repeats
    its requests: the bench log's 37,000 lines a chunk hold about 4,000 distinct ones), the
    rows then taken from the distinct lines' results."""
    encoded = request.dictionary_encode()
    lines = pa.concat_arrays([encoded.dictionary, pa.nulls(1, pa.string())])  # last: none
    at = pc.fill_null(encoded.indices, len(lines) - 1)
    method, path, query = split_request(lines)
    return Requests(
        _labels(method, at), path.take(at), query.take(at), _labels(request_kind(method, path), at)
    )


def _labels(values: pa.Array, at: pa.Array) -> pa.DictionaryArray:
    """`values.take(at)` dictionary-encoded, encoding only `values`."""
    codes = values.dictionary_encode()
    return pa.DictionaryArray.from_arrays(codes.indices.take(at), codes.dictionary)


def request_kind(method: pa.Array, path: pa.Array) -> pa.Array:
    """static (a GET or HEAD of an asset), api, page or other (no request line). A POST to an
    asset's name is a call (Shopify's `/cart/add.js`)."""
    suffix = pc.fill_null(pc.match_substring_regex(path, _STATIC), False)
    fetch = pc.fill_null(pc.is_in(method, pa.array(["GET", "HEAD"])), False)
    api = pc.fill_null(pc.match_substring_regex(path, _API), False)
    kind = pc.if_else(
        pc.and_(suffix, fetch), "static", pc.if_else(pc.or_(api, suffix), "api", "page")
    )
    return pc.if_else(pc.is_null(method), pa.scalar("other"), kind)


def web_events(fields: WebFields, lines: np.ndarray, source_id: str) -> tuple[pa.Table, Refused]:
    """EVENT_SCHEMA rows of the requests on `lines` (physical line numbers), and the lines
    refused (a time, status or size that does not parse), with why."""
    n = len(lines)
    status, size = statuses(fields.status), sizes(fields.size)
    checks = [
        (
            pc.is_null(fields.event_time),
            RejectReason.BAD_EVENT_TIME,
            f"the time is not {fields.time_format}",
        ),
        (  # null (no number) fails too: checks are filled with True
            pc.invert(pc.and_(pc.greater_equal(status, 0), pc.less_equal(status, 999))),
            RejectReason.BAD_LOG_LINE,
            "the status is not a number of up to 3 digits",
        ),
        (
            pc.fill_null(pc.less(size, 0), False),
            RejectReason.BAD_LOG_LINE,
            "the size is not a number or -",
        ),
    ]
    refused: Refused = {}
    good = np.ones(n, dtype=bool)
    for failed, reason, detail in checks:
        mask = np.asarray(pc.fill_null(failed, True).to_numpy(zero_copy_only=False), dtype=bool)
        for line in lines[mask & good].tolist():
            refused[line] = (reason, detail)
        good &= ~mask
    kept = pa.array(good)
    query = fields.query
    host = fields.host
    out: dict[str, pa.Array | None] = {
        "event_time": fields.event_time,
        "event_type": constant(EventType.REQUEST.value, n),
        "ip": dash_to_null(fields.ip),
        "user_agent": None if fields.agent is None else dash_to_null(fields.agent),
        "user_session": fields.session,
        "source": constant(source_id, n),
        "source_pos": pa.array(lines, pa.int64()),
        "host": None if host is None else pc.replace_substring_regex(host, r":\d+$", ""),
        "method": fields.method,
        "path": fields.path,
        "query": pc.if_else(pc.equal(query, ""), pa.scalar(None, pa.string()), query),
        "status": pc.fill_null(status, 0),
        "bytes": pc.fill_null(size, 0),
        "referrer": None if fields.referrer is None else dash_to_null(fields.referrer),
        "request_kind": (
            request_kind(fields.method, fields.path) if fields.kind is None else fields.kind
        ),
    }
    table = pa.table(
        [
            pa.nulls(n, f.type) if (v := out.get(f.name)) is None else conform(v, f.type)
            for f in EVENT_SCHEMA
        ],
        schema=EVENT_SCHEMA,
    )
    return (table, refused) if good.all() else (table.filter(kept), refused)


def line_rejects(
    source_name: str,
    lines: pa.Array,
    numbers: np.ndarray,
    bad: np.ndarray,
    reason: RejectReason,
    details: list[str],
) -> pa.Table:
    """The dead-letter rows of the lines at positions `bad` (of `lines`, numbered `numbers`)
    that a decoder could not split, each with its detail."""
    return rejects_table(
        source_name,
        numbers[bad].tolist(),
        [reason.value] * len(bad),
        details,
        as_text(lines.take(pa.array(bad))).to_pylist(),
    )


def refused_rows(
    refused: Refused, lines: pa.Array, numbers: np.ndarray, source_name: str
) -> pa.Table:
    """The dead-letter rows of refused lines, from the chunk's lines and their numbers."""
    wanted = sorted(refused)
    texts = as_text(lines.take(pa.array(np.searchsorted(numbers, wanted)))).to_pylist()
    return rejects_table(
        source_name,
        wanted,
        [refused[line][0].value for line in wanted],
        [refused[line][1] for line in wanted],
        texts,
    )
