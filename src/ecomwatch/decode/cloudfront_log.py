"""Amazon CloudFront standard access logs decoded into events, vectorized.

A file starts with `#Version: 1.0` and `#Fields: date time x-edge-location sc-bytes c-ip
cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie)
...` (33 fields today, fewer in older files: the header says which, so fields are found by
name); then one tab-separated line per request, `-` for an empty field. CloudFront writes the
user agent, referrer and cookies URL-encoded (`Mozilla/5.0%20(X11;...)`): they are decoded, once
per distinct value. The path and query are kept as sent, as nginx and Apache log them. The
host is the viewer's Host header (`x-host-header`) when logged, else the distribution's domain.
Lines that start with `#` (the header, repeated where files were joined) are not requests and
are not counted; a line whose field count differs from the header's goes to the dead letter.
"""

from __future__ import annotations

from urllib.parse import unquote

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
    cookie_value,
    dash_to_null,
    line_rejects,
    parse_iso_utc,
    refused_rows,
    web_events,
)

REQUIRED = ("date", "time", "c-ip", "cs-method", "cs-uri-stem", "sc-status")
TIME_FORMAT = "a date and time in UTC (2026-11-30 and 23:59:59)"


class CloudFrontLayout:
    """A CloudFront standard log, with the fields its `#Fields` header names."""

    name = "cloudfront"

    def __init__(self, fields: list[str]) -> None:
        missing = [name for name in REQUIRED if name not in fields]
        if missing:
            raise LayoutError(f"the #Fields header lacks {', '.join(missing)}")
        self.fields = fields
        self.index = {name: i for i, name in enumerate(fields)}

    @staticmethod
    def sniff(head: bytes) -> CloudFrontLayout:
        """The layout from the file's first lines (`#Version`, `#Fields`)."""
        lines = head.decode("utf-8", "replace").splitlines()
        if not lines or not lines[0].startswith(("#Version:", "#Fields:")):
            raise LayoutError("not a CloudFront standard log: no #Version or #Fields header")
        for line in lines[:4]:
            if line.startswith("#Fields:"):
                return CloudFrontLayout(line.removeprefix("#Fields:").split())
        raise LayoutError("a CloudFront log without its #Fields line among the first lines")

    def decode(
        self, chunk: TextChunk, *, source_name: str, source_id: str, session_cookie: str | None
    ) -> Decoded:
        """Every non-blank line that is not a `#` header becomes an event or a rejected row."""
        lines, numbers = chunk_lines(chunk)
        header = np.asarray(pc.starts_with(lines, b"#").to_numpy(False), dtype=bool)
        if header.any():
            lines, numbers = lines.filter(pa.array(~header)), numbers[~header]
        split = pc.split_pattern(lines, b"\t")
        counts = pc.list_value_length(split).to_numpy(zero_copy_only=False)
        ok = counts == len(self.fields)
        rejects = empty_rejects()
        if not ok.all():
            bad = np.flatnonzero(~ok)
            detail = [f"{counts[i]} fields, the header names {len(self.fields)}" for i in bad]
            rejects = line_rejects(
                source_name, lines, numbers, bad, RejectReason.WRONG_FIELD_COUNT, detail
            )
        kept_split, kept_numbers = split.filter(pa.array(ok)), numbers[ok]
        events, refused = web_events(
            self._fields(kept_split, session_cookie), kept_numbers, source_id
        )
        if refused:
            refused_table = refused_rows(refused, lines, numbers, source_name)
            rejects = pa.concat_tables([rejects, refused_table])
        return Decoded(events, rejects.sort_by("line") if rejects.num_rows else rejects)

    def _field(self, split: pa.Array, name: str) -> pa.Array | None:
        at = self.index.get(name)
        if at is None:
            return None
        return as_text(pc.list_element(split, at))

    def _fields(self, split: pa.Array, session_cookie: str | None) -> WebFields:
        def required(name: str) -> pa.Array:
            found = self._field(split, name)
            assert found is not None  # checked by __init__
            return found

        stamp = pc.binary_join_element_wise(required("date"), required("time"), "T")
        event_time = parse_iso_utc(stamp)
        host = self._field(split, "x-host-header")
        if host is None:
            host = self._field(split, "cs(Host)")
        cookies = self._field(split, "cs(Cookie)")
        session = None
        if session_cookie and cookies is not None:
            session = cookie_value([cookies], session_cookie)
        return WebFields(
            event_time=event_time,
            time_format=TIME_FORMAT,
            ip=required("c-ip"),
            status=required("sc-status"),
            size=_or_dash(self._field(split, "sc-bytes"), len(split)),
            method=dash_to_null(required("cs-method")),
            path=dash_to_null(required("cs-uri-stem")),
            query=dash_to_null(_or_dash(self._field(split, "cs-uri-query"), len(split))),
            agent=_url_decoded(self._field(split, "cs(User-Agent)")),
            referrer=_url_decoded(self._field(split, "cs(Referer)")),
            host=None if host is None else dash_to_null(host),
            session=session,
        )


def _or_dash(values: pa.Array | None, n: int) -> pa.Array:
    """A field the file's `#Fields` lacks, as if every line had logged `-`."""
    return values if values is not None else pa.repeat(pa.scalar("-"), n)


def _url_decoded(values: pa.Array | None) -> pa.Array | None:
    """URL-decoded, once per distinct value (a log has far fewer agents than lines)."""
    if values is None:
        return None
    encoded = values.dictionary_encode()
    distinct = [None if v is None else unquote(v) for v in encoded.dictionary.to_pylist()]
    return pa.array(distinct, pa.string()).take(encoded.indices)
