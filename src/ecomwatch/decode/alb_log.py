"""AWS load balancer access logs (Application Load Balancer, and the Classic ELB's HTTP lines)
decoded into events, vectorized: one RE2 match per line in C++, no Python per line.

A line is space-separated with quoted fields: `[type] time elb client:port target:port
request_processing_time target_processing_time response_processing_time elb_status_code
target_status_code received_bytes sent_bytes "request" "user_agent" ...` (the ALB adds a
`type` first and more fields after the user agent, their number growing over the years: they
are not read). The time is ISO 8601 in UTC with microseconds; the client is `address:port`,
an IPv6 address without brackets; the request's target is an absolute URL
(`GET https://shop.example:443/cart?x=1 HTTP/1.1`), whose host becomes the event's host. A
request the balancer could not read is logged as `- - -`; a response it never sent has
status `-`, kept as 0. ALB logs carry no referrer and no cookies.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.decode.chunks import TextChunk
from ecomwatch.decode.csv_decoder import LayoutError
from ecomwatch.decode.rejects import RejectReason, empty_rejects
from ecomwatch.decode.validate import Decoded
from ecomwatch.decode.web_events import (
    WebFields,
    as_text,
    chunk_lines,
    dash_to_null,
    line_rejects,
    parse_iso_utc,
    refused_rows,
    web_events,
)

_QUOTED = r'(?:[^"\\]|\\.)*'
_LINE = (
    r"^(?:(?P<type>[a-z0-9]{1,10}) )?(?P<time>\d{4}-\d\d-\d\dT\S+) \S+ (?P<client>\S+) \S+ "
    r"\S+ \S+ \S+ (?P<status>\S+) \S+ \S+ (?P<bytes>\S+) "
    r'"(?P<request>' + _QUOTED + r')"(?: "(?P<agent>' + _QUOTED + r')")?(?: .*)?$'
)
_URL_REQUEST = (
    r"^(?P<method>[A-Z][A-Z_-]{0,19}) (?:[a-zA-Z][a-zA-Z0-9+.-]*://"
    r"(?P<host>\[[0-9a-fA-F:.]+\]|[^/?\s:]*)(?::\d+)?)?(?P<path>[^?\s]*)(?:\?(?P<query>\S*))?"
    r"(?: \S+)?$"
)
_ISO_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$"
TIME_FORMAT = "ISO 8601 in UTC (2026-11-30T23:59:59.123456Z)"
_FIRST = re.compile(_LINE)


class AlbLayout:
    """An ALB (or Classic ELB) access log."""

    name = "alb"

    @staticmethod
    def sniff(first_line: bytes) -> AlbLayout:
        text = first_line.decode("utf-8", "backslashreplace").rstrip("\r\n")
        match = _FIRST.match(text)
        if match is None or not re.match(_ISO_TIME, match.group("time")):
            raise LayoutError(
                "not an ALB access log line: expected `type time elb client:port target:port "
                '... status target_status received sent "request" "user agent" ...`'
            )
        return AlbLayout()

    def decode(
        self, chunk: TextChunk, *, source_name: str, source_id: str, session_cookie: str | None
    ) -> Decoded:
        """Every non-blank line becomes an event or a rejected row."""
        del session_cookie  # an ALB logs no cookies
        lines, numbers = chunk_lines(chunk)
        all_lines, all_numbers = lines, numbers
        matched = pc.extract_regex(lines, _LINE)
        ok = np.asarray(pc.is_valid(matched).to_numpy(zero_copy_only=False), dtype=bool)
        rejects = empty_rejects()
        if not ok.all():
            bad = np.flatnonzero(~ok)
            detail = ["not an ALB access log line"] * len(bad)
            rejects = line_rejects(
                source_name, lines, numbers, bad, RejectReason.BAD_LOG_LINE, detail
            )
            matched, numbers = matched.filter(pa.array(ok)), numbers[ok]
        events, refused = web_events(_fields(matched), numbers, source_id)
        if refused:
            refused_table = refused_rows(refused, all_lines, all_numbers, source_name)
            rejects = pa.concat_tables([rejects, refused_table])
        return Decoded(events, rejects.sort_by("line") if rejects.num_rows else rejects)


def _fields(matched: pa.Array) -> WebFields:
    def field(name: str) -> pa.Array:
        return as_text(pc.struct_field(matched, name))

    stamp = field("time")
    event_time = parse_iso_utc(stamp)
    request = pc.replace_substring(field("request"), '\\"', '"')
    split = pc.extract_regex(request, _URL_REQUEST)
    method, target = pc.struct_field(split, "method"), pc.struct_field(split, "path")
    unread = pc.match_substring_regex(request, r"^[-\s]*$")
    path = pc.if_else(
        pc.is_null(method),
        pc.if_else(unread, pa.scalar(None, pa.string()), request),
        pc.if_else(pc.equal(target, ""), "/", target),
    )
    agent = field("agent")
    return WebFields(
        event_time=event_time,
        time_format=TIME_FORMAT,
        ip=pc.replace_substring_regex(field("client"), r":\d+$", ""),
        status=pc.if_else(pc.equal(field("status"), "-"), "000", field("status")),
        size=field("bytes"),
        method=method,
        path=path,
        query=pc.struct_field(split, "query"),
        agent=pc.replace_substring(pc.replace_substring(agent, '\\"', '"'), "\\\\", "\\"),
        host=dash_to_null(pc.struct_field(split, "host")),
    )
