"""Web server access logs (NCSA common and combined, as nginx and Apache write them, and
Apache's vhost_combined) decoded into events: one event per request, vectorized.

A line is `[vhost[:port]] ip ident user [time zone] "request" status bytes ["referrer"
"user agent"] [more fields]`. pyarrow's CSV reader splits the lines on spaces with `"` as the
quote and converts the fields as it goes (C++, no Python per line: addresses and user agents
to labels, status and size to numbers; a chunk with a field that will not convert is split
again as bytes and converted after); the few lines it cannot split the same way — Apache's `\\"`
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
from ecomwatch.decode.clf_time import TIME_FORMAT, parse_clf_time_fields, parse_clf_times
from ecomwatch.decode.csv_decoder import Delimited, LayoutError, read_delimited
from ecomwatch.decode.rejects import RejectReason, empty_rejects, rejects_table
from ecomwatch.decode.validate import Decoded
from ecomwatch.decode.web_events import (
    Refused,
    WebFields,
    as_text,
    cookie_value,
    dash_to_null,
    sizes,
    split_requests,
    statuses,
    web_events,
)
from ecomwatch.schema import LABEL_TYPE

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_HEAD = r"(\S+) \S+ \S+ \[([^\]]+)\] " + _QUOTED + r" (\S+) (\S+)"
_FIRST_LINE = re.compile(r"^(?:(\S+) )?" + _HEAD + r"(?: " + _QUOTED + " " + _QUOTED + r")?(.*)$")
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
        return "^" + head + body + r"(?: (?P<rest>.*))?\r?$"


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
    session_cookie: str | None = None,
) -> Decoded:
    """Every non-blank line of the chunk becomes an event or a rejected row (URL maps apply
    after, in `web_logs.decode_web_chunk`); with a session cookie's name, a request
    whose fields after the user agent hold that cookie (nginx's `"$http_cookie"`, Apache's
    `"%{Cookie}i"`) gets its value as its session."""
    fields = layout.fields
    kept = [name for name in _KEPT if name in fields]
    if session_cookie:
        kept += [name for name in fields if name.startswith("extra")]
    lines = _Lines(chunk.data)
    # Lines the CSV reader would split wrongly: Apache's `\"`, a lone `\r` (a line break to
    # it). If it still cannot line rows up with lines, a stray quote ran on: add those lines.
    suspects = lines.holding_escaped_quote() | lines.holding_lone_cr()
    try:  # each field converted as it is split
        parsed, suspects = _split(chunk, lines, suspects, fields, kept, _column_types(kept))
        columns = _values({name: parsed.table[name].combine_chunks() for name in kept})
    except pa.ArrowInvalid:  # a field not UTF-8, a status or size no number: read as bytes
        parsed, suspects = _split(chunk, lines, suspects, fields, kept, None)
        columns = _values({name: as_text(parsed.table[name]) for name in kept})
    numbers = {chunk.first_line + i for i in suspects}
    leftovers = [(line, text) for line, text, _ in parsed.invalid if line not in numbers]
    leftovers += [(chunk.first_line + i, lines.text(i)) for i in sorted(suspects)]
    row_lines = parsed.lines
    if leftovers:
        columns, row_lines, rejects = _with_leftovers(
            columns, row_lines, sorted(leftovers), layout, source_name
        )
    else:
        rejects = empty_rejects()
    events, refused = _events(columns, row_lines, source_id, session_cookie)
    if refused:
        rejects = pa.concat_tables([rejects, _field_rejects(refused, chunk, lines, source_name)])
    return Decoded(events, rejects.sort_by("line") if rejects.num_rows else rejects)


def _split(
    chunk: TextChunk,
    lines: _Lines,
    suspects: set[int],
    fields: list[str],
    kept: list[str],
    types: dict[str, pa.DataType] | None,
) -> tuple[Delimited, set[int]]:
    """The chunk split on spaces with the suspect lines blanked (more of them if a stray quote
    ran on), and the suspects."""
    try:
        return _split_blanked(lines.blanked(chunk, suspects), fields, kept, types), suspects
    except LayoutError:
        suspects = suspects | lines.with_odd_quotes()
        return _split_blanked(lines.blanked(chunk, suspects), fields, kept, types), suspects


def _split_blanked(
    chunk: TextChunk, fields: list[str], kept: list[str], types: dict[str, pa.DataType] | None
) -> Delimited:
    options = pacsv.ParseOptions(delimiter=" ", quote_char='"', double_quote=False)
    return read_delimited(chunk, fields, include=kept, parse_options=options, column_types=types)


def _column_types(kept: list[str]) -> dict[str, pa.DataType]:
    """How the CSV reader converts the fields: addresses and user agents as labels, status
    and size as numbers, the rest as text."""
    numbers = {"status": pa.int16(), "bytes": pa.int64()}
    labels = {"ip", "agent"}
    return {name: numbers.get(name, LABEL_TYPE if name in labels else pa.string()) for name in kept}


def _values(fields: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """Split fields as the events' values: the time parsed (`stamp`, or the `time` and `zone`
    fields), status and size as numbers (`web_events` checks them), `-` as null."""
    out = dict(fields)
    if "stamp" in out:
        out["event_time"] = parse_clf_times(out.pop("stamp"))
    else:
        out["event_time"] = parse_clf_time_fields(out.pop("time"), out.pop("zone"))
    out["status"], out["bytes"] = statuses(out["status"]), sizes(out["bytes"])
    for name in ("ip", "request", "referrer", "agent"):
        if name in out:
            out[name] = dash_to_null(out[name])
    return out


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

    def bounds(self, index: int) -> tuple[int, int]:
        newlines = self.newlines
        begin = int(newlines[index - 1]) + 1 if index else 0
        end = int(newlines[index]) if index < len(newlines) else len(self.data)
        return begin, end

    def text(self, index: int) -> str:
        begin, end = self.bounds(index)
        return self.data[begin:end].rstrip(b"\r").decode("utf-8", "backslashreplace")

    def holding_escaped_quote(self) -> set[int]:
        """The lines with a `\\"` (Apache's escaped quote), found with numpy."""
        if b"\\" not in self.data:
            return set()
        data = np.frombuffer(self.data, dtype=np.uint8)
        slashes = np.flatnonzero(data[:-1] == ord("\\"))
        escaped = slashes[data[slashes + 1] == ord('"')]
        return set(np.searchsorted(self.newlines, escaped).tolist()) if len(escaped) else set()

    def holding_lone_cr(self) -> set[int]:
        """The lines with a `\\r` not before a `\\n` (the chunk's end counts as one)."""
        if b"\r" not in self.data:
            return set()
        data = np.frombuffer(self.data, dtype=np.uint8)
        cr = np.flatnonzero(data == 13)
        following = data[np.minimum(cr + 1, len(data) - 1)]
        lone = cr[(following != 10) & (cr + 1 < len(data))]
        return set(np.searchsorted(self.newlines, lone).tolist()) if len(lone) else set()

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
    found = matched.filter(pa.array(ok))
    text: dict[str, pa.Array] = {}
    for name in columns:
        if name == "event_time":
            text["stamp"] = pc.struct_field(found, "stamp")
        elif name.startswith("extra"):  # the fields after the user agent, as one (for cookies)
            empty = pa.nulls(len(found), pa.string())
            text[name] = pc.struct_field(found, "rest") if name == "extra0" else empty
        elif name in ("request", "referrer", "agent"):
            unquoted = pc.replace_substring(pc.struct_field(found, name), '\\"', '"')
            text[name] = pc.replace_substring(unquoted, "\\\\", "\\")
        else:
            text[name] = pc.struct_field(found, name)
    extra = _values(text)
    merged = {
        name: pa.concat_arrays([columns[name], extra[name].cast(columns[name].type)])
        for name in columns
    }
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


def _events(
    columns: dict[str, pa.Array], lines: np.ndarray, source_id: str, session_cookie: str | None
) -> tuple[pa.Table, Refused]:
    """EVENT_SCHEMA rows from the lines' text columns, and the lines refused, with why."""
    requests = split_requests(columns["request"])
    cookies = [values for name, values in columns.items() if name.startswith("extra")]
    fields = WebFields(
        event_time=columns["event_time"],
        time_format=TIME_FORMAT,
        ip=columns["ip"],
        status=columns["status"],
        size=columns["bytes"],
        method=requests.method,
        path=requests.path,
        query=requests.query,
        kind=requests.kind,
        agent=columns.get("agent"),
        referrer=columns.get("referrer"),
        host=columns.get("host"),
        session=cookie_value(cookies, session_cookie) if session_cookie and cookies else None,
    )
    return web_events(fields, lines, source_id)


def _field_rejects(
    refused: Refused,
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
