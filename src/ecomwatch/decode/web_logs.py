"""Which web log a file is, and the decoder for it: nginx and Apache (common, combined,
vhost_combined, with extra fields), AWS ALB and CloudFront.

`--format auto` (the default) knows a log by its first lines: CloudFront's `#Version`/`#Fields`
header, an ALB line's `type ISO-time elb client:port`, else the NCSA common/combined shape.
nginx and Apache share the NCSA decoder, which reads both servers' escapes (nginx's `\\xHH`,
Apache's `\\"`); naming either only insists the file be of that shape. A format named on the
command line that the file does not have is an error that says what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ecomwatch.decode.access_log import AccessLogLayout, decode_access_log_chunk, sniff_access_log
from ecomwatch.decode.alb_log import AlbLayout
from ecomwatch.decode.chunks import TextChunk
from ecomwatch.decode.cloudfront_log import CloudFrontLayout
from ecomwatch.decode.csv_decoder import LayoutError
from ecomwatch.decode.url_map import UrlMap
from ecomwatch.decode.validate import Decoded


class LogFormat(StrEnum):
    AUTO = "auto"
    NGINX = "nginx"
    APACHE = "apache"
    ALB = "alb"
    CLOUDFRONT = "cloudfront"


LOG_FORMATS: tuple[str, ...] = tuple(f.value for f in LogFormat)


@dataclass(frozen=True)
class WebLogOptions:
    """How to read web logs: which format, which requests are commerce events, which cookie
    names a session."""

    format: LogFormat = LogFormat.AUTO
    url_map: UrlMap | None = None
    session_cookie: str | None = None


class WebLogLayout(Protocol):
    name: str

    def decode(
        self, chunk: TextChunk, *, source_name: str, source_id: str, session_cookie: str | None
    ) -> Decoded: ...


class NcsaLayout:
    """nginx's and Apache's access logs (common, combined, vhost_combined, extra fields)."""

    def __init__(self, layout: AccessLogLayout) -> None:
        self.layout = layout
        self.name = layout.name

    def decode(
        self, chunk: TextChunk, *, source_name: str, source_id: str, session_cookie: str | None
    ) -> Decoded:
        return decode_access_log_chunk(
            chunk,
            self.layout,
            source_name=source_name,
            source_id=source_id,
            session_cookie=session_cookie,
        )


def sniff_web_log(head: bytes, wanted: LogFormat = LogFormat.AUTO) -> WebLogLayout:
    """The layout of a web log from its first lines (`head`); LayoutError when it is not one
    (of the wanted format)."""
    first = head.split(b"\n", 1)[0]
    if wanted is LogFormat.CLOUDFRONT or (wanted is LogFormat.AUTO and first.startswith(b"#")):
        return CloudFrontLayout.sniff(head)
    if wanted is LogFormat.ALB:
        return AlbLayout.sniff(first)
    if wanted is LogFormat.AUTO:
        try:
            return AlbLayout.sniff(first)
        except LayoutError:
            pass
    return NcsaLayout(sniff_access_log(first))


def decode_web_chunk(
    chunk: TextChunk,
    layout: WebLogLayout,
    options: WebLogOptions,
    *,
    source_name: str,
    source_id: str,
) -> Decoded:
    """A chunk of a web log as events (and rejects), commerce events mapped."""
    decoded = layout.decode(
        chunk,
        source_name=source_name,
        source_id=source_id,
        session_cookie=options.session_cookie,
    )
    if options.url_map is None:
        return decoded
    return Decoded(options.url_map.apply(decoded.events), decoded.rejects)
