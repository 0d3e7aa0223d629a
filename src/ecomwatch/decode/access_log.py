"""Web server access logs (NCSA common and combined, as nginx and Apache write them, and
Apache's vhost_combined) decoded into events: one event per request, vectorized.

A line is `[vhost[:port]] ip ident user [time zone] "request" status bytes ["referrer"
"user agent"] [more fields]`. pyarrow's CSV reader splits the lines on spaces with `"` as the
quote (C++, no Python per line); the few lines it cannot split the same way — Apache's `\\"`
escapes, a quote inside a field, a line of another shape — are matched with a regular
expression instead (RE2, vectorized over just those lines), and what neither reads goes to the
dead letter. nginx's `\\xHH` escapes are kept as written.

Each request becomes an event of type `request` with the web columns filled (method, path,
query, status, bytes, referrer, request kind, host); a request line that is not `METHOD TARGET
[PROTOCOL]` (TLS bytes sent to the HTTP port, `-`) is kept, whole in `path`, kind `other`: such
lines are signals, not noise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ecomwatch.decode.chunks import TextChunk
from ecomwatch.decode.csv_decoder import LayoutError, read_delimited
from ecomwatch.decode.rejects import RejectReason, empty_rejects, rejects_table
from ecomwatch.decode.url_map import UrlMap
from ecomwatch.decode.validate import Decoded
from ecomwatch.schema import EVENT_SCHEMA, TIME_TYPE, EventType, conform, constant

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_HEAD = r"(\S+) \S+ \S+ \[([^\]]+)\] " + _QUOTED + r" (\S+) (\S+)"
_FIRST_LINE = re.compile(r"^(?:(\S+) )?" + _HEAD + r"(?: " + _QUOTED + " " + _QUOTED + r")?(.*)$")
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
_REQUEST = (
    r"^(?P<method>[A-Z][A-Z_-]{0,19}) (?P<path>[^?\s]*)(?:\?(?P<query>\S*))?"
    r"(?: HTTP/\d(?:\.\d)?)?$"
)
_STATIC = (
    r"(?i)\.(css|js|mjs|map|png|jpe?g|gif|svg|ico|webp|avif|bmp|tiff?|woff2?|ttf|otf|eot"
    r"|mp4|webm|mp3|ogg|wav|pdf|zip|gz|txt|xml)$"
)
_API = r"(?i)^/(api|wp-json|graphql|rest|ajax)(/|$)|admin-ajax\.php$|\.json$"
_KEPT = ("host", "ip", "time", "zone", "request", "status", "bytes", "referrer", "agent")


@dataclass(frozen=True)
class AccessLogLayout:
    """The shape of a log's lines, from its first line."""

    vhost: bool  # a leading `host[:port]` field (Apache's vhost_combined)
    combined: bool  # referrer and user agent after the bytes
    extras: int  # fields after the user agent (nginx's $http_x_forwarded_for, timings, ...)

    @property
    def fields(self) -> list[str]:
        names = ["host"] if self.vhost else []
        names += ["ip", "ident", "user", "time", "zone", "request", "status", "bytes"]
        if self.combined:
            names += ["referrer", "agent"]
        return names + [f"extra{i}" for i in range(self.extras)]

    @property
    def name(self) -> str:
        kind = "combined" if self.combined else "common"
        return ("vhost_" if self.vhost else "") + kind + (f"+{self.extras}" if self.extras else "")

    def pattern(self) -> str:
        """The regular expression for a line of this layout (named groups as the columns)."""
        head = r"(?P<host>\S+) " if self.vhost else ""
        body = (
            r"(?P<ip>\S+) \S+ \S+ \[(?P<stamp>[^\]]+)\] "
            r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\S+) (?P<bytes>\S+)'
        )
        if self.combined:
            body += r' "(?P<referrer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"'
        return "^" + head + body + r"(?: .*)?\r?$"


def sniff_access_log(first_line: bytes) -> AccessLogLayout:
    """The layout of a log from its first line; LayoutError when it is not an access log."""
    text = first_line.decode("utf-8", "backslashreplace").rstrip("\r\n")
    match = _FIRST_LINE.match(text)
    if match is None or not match.group(5).isdigit():
        raise LayoutError(
            "not a common or combined access log line: expected "
            '`ip - user [time] "request" status bytes "referrer" "user agent"`'
        )
    host = match.group(1)
    if host is not None and not re.match(r"^[\w.-]+(:\d+)?$", host):
        raise LayoutError(f"the first field {host!r} is neither a client address nor a host")
    rest = match.group(9).strip()
    extras = len(_split_extras(rest)) if rest else 0
    return AccessLogLayout(
        vhost=host is not None, combined=match.group(7) is not None, extras=extras
    )


def _split_extras(rest: str) -> list[str]:
    return re.findall(r'"(?:[^"\\]|\\.)*"|\S+', rest)


def decode_access_log_chunk(
    chunk: TextChunk,
    layout: AccessLogLayout,
    *,
    source_name: str,
    source_id: str,
    url_map: UrlMap | None = None,
) -> Decoded:
    """Every non-blank line of the chunk becomes an event or a rejected row; with a URL map,
    the requests it names become commerce events."""
    fields = layout.fields
    kept = [name for name in _KEPT if name in fields]
    options = pacsv.ParseOptions(delimiter=" ", quote_char='"', double_quote=False)
    lines = _Lines(chunk.data)
    # Lines the CSV reader would split wrongly: Apache's `\"`, a lone `\r` (a line break to
    # it). If it still cannot line rows up with lines, a stray quote ran on: add those lines.
    suspects = lines.holding(b'\\"') | lines.holding_lone_cr()
    try:
        parsed = read_delimited(lines.blanked(chunk, suspects), fields, include=kept,
                                parse_options=options)  # fmt: skip
    except LayoutError:
        suspects |= lines.with_odd_quotes()
        parsed = read_delimited(lines.blanked(chunk, suspects), fields, include=kept,
                                parse_options=options)  # fmt: skip
    numbers = {chunk.first_line + i for i in suspects}
    leftovers = [(line, text) for line, text, _ in parsed.invalid if line not in numbers]
    leftovers += [(chunk.first_line + i, lines.text(i)) for i in sorted(suspects)]
    columns = _from_split(parsed.table, layout)
    row_lines = parsed.lines
    if leftovers:
        columns, row_lines, rejects = _with_leftovers(
            columns, row_lines, sorted(leftovers), layout, source_name
        )
    else:
        rejects = empty_rejects()
    events, refused = _events(columns, row_lines, source_id)
    if url_map is not None:
        events = url_map.apply(events)
    if refused:
        rejects = pa.concat_tables([rejects, _field_rejects(refused, chunk, lines, source_name)])
    return Decoded(events, rejects.sort_by("line") if rejects.num_rows else rejects)


class _Lines:
    """Where a chunk's lines are, found only when a line needs looking at (rarely)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._newlines: np.ndarray | None = None

    @property
    def newlines(self) -> np.ndarray:
        if self._newlines is None:
            self._newlines = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 10)
        return self._newlines

    def index_at(self, offset: int) -> int:
        return int(np.searchsorted(self.newlines, offset))

    def bounds(self, index: int) -> tuple[int, int]:
        newlines = self.newlines
        begin = int(newlines[index - 1]) + 1 if index else 0
        end = int(newlines[index]) if index < len(newlines) else len(self.data)
        return begin, end

    def text(self, index: int) -> str:
        begin, end = self.bounds(index)
        return self.data[begin:end].rstrip(b"\r").decode("utf-8", "backslashreplace")

    def holding(self, needle: bytes) -> set[int]:
        found: set[int] = set()
        start = self.data.find(needle)
        while start != -1:
            index = self.index_at(start)
            found.add(index)
            start = self.data.find(needle, self.bounds(index)[1])
        return found

    def holding_lone_cr(self) -> set[int]:
        if b"\r" not in self.data or self.data.count(b"\r") == self.data.count(b"\r\n"):
            return set()
        cr = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 13)
        following = np.frombuffer(self.data + b"\n", dtype=np.uint8)[cr + 1]
        return {self.index_at(int(at)) for at in cr[following != 10]}

    def with_odd_quotes(self) -> set[int]:
        quotes = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 34)
        per_line = np.bincount(np.searchsorted(self.newlines, quotes))
        return {int(i) for i in np.flatnonzero(per_line % 2)}

    def blanked(self, chunk: TextChunk, indices: set[int]) -> TextChunk:
        """The chunk with those lines replaced by `-` (the same line count, so every other line
        keeps its number)."""
        if not indices:
            return chunk
        parts, at = [], 0
        for index in sorted(indices):
            begin, end = self.bounds(index)
            parts += [self.data[at:begin], b"-"]
            at = end
        parts.append(self.data[at:])
        return TextChunk(b"".join(parts), chunk.offset, chunk.first_line)


def _text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Binary to text; bytes that are not UTF-8 are kept as `\\xHH`, as nginx writes them."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    try:
        return array.cast(pa.string())
    except pa.ArrowInvalid:
        values = array.to_pylist()
        return pa.array(
            [None if v is None else v.decode("utf-8", "backslashreplace") for v in values],
            pa.string(),
        )


def _from_split(table: pa.Table, layout: AccessLogLayout) -> dict[str, pa.Array]:
    """The CSV reader's columns as text: the bracketed time and zone joined into `stamp`."""
    out = {name: _text(table[name]) for name in table.column_names}
    time, zone = out.pop("time"), out.pop("zone")
    out["stamp"] = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(time, 1), pc.utf8_rtrim(zone, characters="]"), " "
    )
    return out


def _with_leftovers(
    columns: dict[str, pa.Array],
    lines: np.ndarray,
    leftovers: list[tuple[int, str]],
    layout: AccessLogLayout,
    source_name: str,
) -> tuple[dict[str, pa.Array], np.ndarray, pa.Table]:
    """The lines the CSV reader could not split, matched with the layout's regular expression
    (unescaping Apache's `\\"` and `\\\\`); the rest are rejected."""
    texts = pa.array([text for _, text in leftovers], pa.string())
    numbers = np.array([line for line, _ in leftovers], dtype=np.int64)
    matched = pc.extract_regex(texts, layout.pattern())
    ok = np.asarray(pc.is_valid(matched).to_numpy(zero_copy_only=False), dtype=bool)
    extra: dict[str, pa.Array] = {}
    for name in columns:
        values = pc.struct_field(matched.filter(pa.array(ok)), name)
        if name in ("request", "referrer", "agent"):
            values = pc.replace_substring(pc.replace_substring(values, '\\"', '"'), "\\\\", "\\")
        extra[name] = values
    merged = {name: pa.concat_arrays([columns[name], extra[name]]) for name in columns}
    all_lines = np.concatenate([lines, numbers[ok]])
    order = np.argsort(all_lines, kind="stable")
    merged = {name: values.take(pa.array(order)) for name, values in merged.items()}
    bad = np.flatnonzero(~ok)
    rejects = rejects_table(
        source_name,
        numbers[bad].tolist(),
        [RejectReason.BAD_LOG_LINE.value] * len(bad),
        [f"not a {layout.name} access log line"] * len(bad),
        [leftovers[i][1] for i in bad],
    )
    return merged, all_lines[order], rejects


def _dash_to_null(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, "-"), pa.scalar(None, pa.string()), values)


def _parse_stamps(stamps: pa.Array) -> pa.Array:
    """`20/Feb/2016:00:00:45 -0500` to UTC, parsed once per distinct second."""
    encoded = stamps.dictionary_encode()
    parsed = pc.strptime(encoded.dictionary, format=TIME_FORMAT, unit="us", error_is_null=True)
    return parsed.cast(TIME_TYPE).take(encoded.indices)


def _request_kind(method: pa.Array, path: pa.Array) -> pa.Array:
    """static (a GET or HEAD of an asset), api, page or other (no request line). A POST to an
    asset's name is a call (Shopify's `/cart/add.js`)."""
    suffix = pc.fill_null(pc.match_substring_regex(path, _STATIC), False)
    fetch = pc.fill_null(pc.is_in(method, pa.array(["GET", "HEAD"])), False)
    api = pc.fill_null(pc.match_substring_regex(path, _API), False)
    kind = pc.if_else(
        pc.and_(suffix, fetch), "static", pc.if_else(pc.or_(api, suffix), "api", "page")
    )
    return pc.if_else(pc.is_null(method), pa.scalar("other"), kind)


def _events(
    columns: dict[str, pa.Array], lines: np.ndarray, source_id: str
) -> tuple[pa.Table, dict[int, tuple[RejectReason, str]]]:
    """EVENT_SCHEMA rows from the lines' text columns, and the lines refused (a time, status
    or size that does not parse), with why."""
    n = len(lines)
    event_time = _parse_stamps(columns["stamp"])
    numeric_status = pc.match_substring_regex(columns["status"], r"^\d{3}$")
    size = columns["bytes"]
    numeric_size = pc.match_substring_regex(size, r"^(\d{1,18}|-)$")
    checks = [
        (pc.is_null(event_time), RejectReason.BAD_EVENT_TIME, f"the time is not {TIME_FORMAT}"),
        (pc.invert(numeric_status), RejectReason.BAD_LOG_LINE, "the status is not 3 digits"),
        (pc.invert(numeric_size), RejectReason.BAD_LOG_LINE, "the size is not a number or -"),
    ]
    refused: dict[int, tuple[RejectReason, str]] = {}
    good = np.ones(n, dtype=bool)
    for failed, reason, detail in checks:
        mask = np.asarray(pc.fill_null(failed, True).to_numpy(zero_copy_only=False), dtype=bool)
        for line in lines[mask & good].tolist():
            refused[line] = (reason, detail)
        good &= ~mask
    status = pc.if_else(pa.array(good), columns["status"], "0").cast(pa.int16())
    nbytes = pc.if_else(pc.or_(pc.equal(size, "-"), pa.array(~good)), "0", size).cast(pa.int64())
    request = columns["request"]
    split = pc.extract_regex(request, _REQUEST)
    method = pc.struct_field(split, "method")
    unparsed = pc.is_null(method)
    path = pc.if_else(unparsed, _dash_to_null(request), pc.struct_field(split, "path"))
    query = pc.struct_field(split, "query")
    host = columns.get("host")
    out: dict[str, pa.Array | None] = {
        "event_time": event_time,
        "event_type": constant(EventType.REQUEST.value, n),
        "ip": _dash_to_null(columns["ip"]),
        "user_agent": _dash_to_null(columns["agent"]) if "agent" in columns else None,
        "source": constant(source_id, n),
        "source_pos": pa.array(lines, pa.int64()),
        "host": None if host is None else pc.replace_substring_regex(host, r":\d+$", ""),
        "method": method,
        "path": path,
        "query": pc.if_else(pc.equal(query, ""), pa.scalar(None, pa.string()), query),
        "status": status,
        "bytes": nbytes,
        "referrer": _dash_to_null(columns["referrer"]) if "referrer" in columns else None,
        "request_kind": _request_kind(method, path),
    }
    table = pa.table(
        [
            pa.nulls(n, f.type) if (v := out.get(f.name)) is None else conform(v, f.type)
            for f in EVENT_SCHEMA
        ],
        schema=EVENT_SCHEMA,
    )
    return (table, refused) if good.all() else (table.filter(pa.array(good)), refused)


def _field_rejects(
    refused: dict[int, tuple[RejectReason, str]],
    chunk: TextChunk,
    lines: _Lines,
    source_name: str,
) -> pa.Table:
    numbers = sorted(refused)
    return rejects_table(
        source_name,
        numbers,
        [refused[line][0].value for line in numbers],
        [refused[line][1] for line in numbers],
        [lines.text(line - chunk.first_line) for line in numbers],
    )
