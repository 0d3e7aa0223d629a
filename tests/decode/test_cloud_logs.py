"""AWS load balancer (ALB, Classic ELB) and CloudFront logs: the shapes AWS documents, a real
log's requests rewritten in each format decoding to the same events as the original, session
cookies, and `--format` refusing a file of another kind."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pytest

from ecomwatch.decode.chunks import TextChunk
from ecomwatch.decode.csv_decoder import LayoutError
from ecomwatch.decode.validate import Decoded
from ecomwatch.decode.web_logs import LogFormat, WebLogOptions, sniff_web_log
from ecomwatch.sources.base import Position, SourceError
from ecomwatch.sources.files import FileSource

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "accesslogs"
SCAN_LOG = SHARED / "scan_attack_2024__AgungBahtiarr_webserver_attack_clasification_access.log"
CLOUDFRONT_FIELDS = [
    "date", "time", "x-edge-location", "sc-bytes", "c-ip", "cs-method", "cs(Host)",
    "cs-uri-stem", "sc-status", "cs(Referer)", "cs(User-Agent)", "cs-uri-query", "cs(Cookie)",
    "x-edge-result-type", "x-edge-request-id", "x-host-header", "cs-protocol", "cs-bytes",
    "time-taken", "x-forwarded-for", "ssl-protocol", "ssl-cipher",
    "x-edge-response-result-type", "cs-protocol-version", "fle-status", "fle-encrypted-fields",
    "c-port", "time-to-first-byte", "x-edge-detailed-result-type", "sc-content-type",
    "sc-content-len", "sc-range-start", "sc-range-end",
]  # fmt: skip
COLUMNS = ["event_time", "ip", "method", "path", "query", "status", "bytes", "user_agent"]


def _decode(data: bytes, session_cookie: str | None = None) -> Decoded:
    layout = sniff_web_log(data[:8192])
    return layout.decode(
        TextChunk(data, 0, 1), source_name="t", source_id="s", session_cookie=session_cookie
    )


def _alb_line(
    when: str, client: str, request: str, agent: str, status: str = "200", size: str = "512"
) -> str:
    return (
        f"https {when} app/shop-lb/50dc6c495c0c9188 {client} 10.0.0.1:80 0.000 0.001 0.000 "
        f'{status} {status} 34 {size} "{request}" "{agent}" ECDHE-RSA-AES128-GCM-SHA256 '
        "TLSv1.2 arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shop/73e2 "
        '"Root=1-58337262-36d228ad5d99923122bbe354" "shop.example" "-" 0 '
        f'{when} "forward" "-" "-" "10.0.0.1:80" "{status}" "-" "-"'
    )


def _cloudfront(rows: list[dict[str, str]], fields: list[str] = CLOUDFRONT_FIELDS) -> bytes:
    lines = ["#Version: 1.0", "#Fields: " + " ".join(fields)]
    lines += ["\t".join(row.get(name, "-") for name in fields) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def test_alb_lines_as_aws_documents_them() -> None:
    lines = [
        _alb_line("2026-11-30T22:23:00.186641Z", "192.168.131.39:2817",
                  "GET https://shop.example:443/product/7?color=blue HTTP/1.1", "curl/8.4.0"),
        # IPv6 clients are logged without brackets; a quote in the agent is escaped
        _alb_line("2026-11-30T22:23:01.5Z", "2a02:a33c:4538:1:bcf4:5264:e01c:f215:50718",
                  "POST https://shop.example:443/checkout HTTP/2.0", 'Mozilla/5.0 \\"x\\"'),
        # a request the balancer could not read, and a response never sent
        _alb_line("2026-11-30T22:23:02.000000Z", "198.51.100.9:4000", "- http://shop.example:80- -",
                  "-", status="-", size="0"),
        "h2 2026-11-30T22:23:03Z app/x this line is cut short",
        _alb_line("2026-11-30T22:23:04.000000Z", "198.51.100.9:4000",
                  "GET https://shop.example:443/ HTTP/1.1", "curl", size="lots"),
    ]  # fmt: skip
    decoded = _decode(("\n".join(lines) + "\n\n").encode())
    rows = decoded.events.select([*COLUMNS, "host", "request_kind"]).to_pylist()
    assert [r["ip"] for r in rows] == [
        "192.168.131.39", "2a02:a33c:4538:1:bcf4:5264:e01c:f215", "198.51.100.9"
    ]  # fmt: skip
    first, second, third = rows
    assert first["event_time"] == datetime(2026, 11, 30, 22, 23, 0, 186641, tzinfo=UTC)
    assert (first["host"], first["path"], first["query"], first["bytes"]) == (
        "shop.example", "/product/7", "color=blue", 512
    )  # fmt: skip
    assert second["event_time"] == datetime(2026, 11, 30, 22, 23, 1, 500000, tzinfo=UTC)
    assert (second["method"], second["user_agent"]) == ("POST", 'Mozilla/5.0 "x"')
    assert (third["method"], third["status"], third["request_kind"]) == (None, 0, "other")
    rejects = decoded.rejects.to_pylist()
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (4, "bad_log_line"), (5, "bad_log_line")
    ]  # fmt: skip
    assert rejects[0]["raw"] == lines[3] and "size" in rejects[1]["detail"]


def test_classic_elb_lines_have_no_type_field() -> None:
    line = (
        "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000073 "
        '0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1" '
        '"curl/7.38.0" - -'
    )
    rows = _decode(line.encode()).events.select(["ip", "path", "status"]).to_pylist()
    assert rows == [{"ip": "192.168.131.39", "path": "/", "status": 200}]


def test_cloudfront_fields_are_found_by_name_and_decoded() -> None:
    rows = [
        {"date": "2026-11-30", "time": "21:02:31", "c-ip": "192.0.2.100", "cs-method": "GET",
         "cs(Host)": "d111111abcdef8.cloudfront.net", "x-host-header": "shop.example",
         "cs-uri-stem": "/product/7", "sc-status": "200", "sc-bytes": "392",
         "cs(Referer)": quote("https://www.google.com/search?q=blue shirt", safe=":/?="),
         "cs(User-Agent)": quote("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", safe="/;()"),
         "cs(Cookie)": "PHPSESSID=f3a9c1;%20cart=2"},
        {"date": "2026-11-30", "time": "21:02:32", "c-ip": "2001:db8::1", "cs-method": "POST",
         "cs-uri-stem": "/checkout/cart/add", "cs-uri-query": "product=7", "sc-status": "302",
         "sc-bytes": "100", "cs(User-Agent)": "curl/8.4.0"},
    ]  # fmt: skip
    data = _cloudfront(rows)
    data += b"#Version: 1.0\nbroken\tline\n"  # a second file's header, and a cut line
    data += _cloudfront([{**rows[1], "time": "25:61:00"}]).split(b"\n", 2)[2]
    decoded = _decode(data, session_cookie="PHPSESSID")
    got = decoded.events.select([*COLUMNS, "host", "referrer", "user_session"]).to_pylist()
    assert got[0]["user_agent"] == "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    assert got[0]["referrer"] == "https://www.google.com/search?q=blue shirt"
    assert (got[0]["host"], got[0]["user_session"], got[0]["query"]) == (
        "shop.example", "f3a9c1", None
    )  # fmt: skip
    assert (got[1]["ip"], got[1]["query"], got[1]["host"], got[1]["user_session"]) == (
        "2001:db8::1", "product=7", None, None
    )  # fmt: skip
    assert [(r["line"], r["reason"]) for r in decoded.rejects.to_pylist()] == [
        (6, "wrong_field_count"), (7, "bad_event_time")
    ]  # fmt: skip
    # the header lines (1, 2, 5) are neither events nor rejects
    assert decoded.events.num_rows + decoded.rejects.num_rows == 4


def test_an_older_cloudfront_header_with_fewer_fields() -> None:
    fields = CLOUDFRONT_FIELDS[:12]  # the 2011-era standard log
    data = _cloudfront(
        [{"date": "2012-01-01", "time": "00:00:01", "c-ip": "192.0.2.1", "cs-method": "GET",
          "cs-uri-stem": "/", "sc-status": "200", "sc-bytes": "10"}], fields,
    )  # fmt: skip
    assert _decode(data).events.select(["ip", "host"]).to_pylist() == [
        {"ip": "192.0.2.1", "host": None}
    ]
    with pytest.raises(LayoutError, match="lacks c-ip"):
        sniff_web_log(b"#Version: 1.0\n#Fields: date time cs-method cs-uri-stem sc-status\n")


def test_a_session_cookie_in_an_nginx_log_extra_field() -> None:
    lines = [
        '203.0.113.5 - - [30/Nov/2026:10:00:00 +0000] "GET /p/1 HTTP/1.1" 200 5 "-" "UA" '
        '"PHPSESSID=abc; theme=dark" 0.012',
        '203.0.113.5 - - [30/Nov/2026:10:00:01 +0000] "GET /p/2 HTTP/1.1" 200 5 "-" "UA" "-" 0.010',
        # an Apache-style escaped quote sends this line down the regular-expression path
        '203.0.113.6 - - [30/Nov/2026:10:00:02 +0000] "GET /p/\\"3 HTTP/1.1" 200 5 "-" "UA" '
        '"theme=light; PHPSESSID=def" 0.011',
    ]
    data = ("\n".join(lines) + "\n").encode()
    sessions = _decode(data, session_cookie="PHPSESSID").events["user_session"].to_pylist()
    assert sessions == ["abc", None, "def"]
    assert _decode(data).events["user_session"].to_pylist() == [None, None, None]


def _scan_requests(limit: int) -> list[dict[str, object]]:
    source = FileSource(SCAN_LOG)
    batches = [b.decoded.events for b in source.read(Position(0, 1))]
    events = pa.concat_tables(batches).slice(0, limit)
    return events.select(COLUMNS).to_pylist()


@pytest.mark.skipif(not SCAN_LOG.is_file(), reason="../shared/data/accesslogs is not here")
@pytest.mark.parametrize("kind", ["alb", "cloudfront"])
def test_a_real_logs_requests_rewritten_decode_to_the_same_events(
    kind: str, tmp_path: Path
) -> None:
    """The first 2,000 requests of the real scan log, written as an ALB or CloudFront would
    have logged them (gzip-compressed, as AWS delivers), give the same events."""
    # An absolute-form target (`GET http://example.com/`, a proxy probe) is logged by an ALB as
    # any other request: its host and path are the URL's, unlike nginx's whole-target path.
    original = [r for r in _scan_requests(2000) if "://" not in str(r["path"])]
    written = []
    for row in original:
        when: datetime = row["event_time"]  # type: ignore[assignment]
        target = str(row["path"]) + (f"?{row['query']}" if row["query"] else "")
        agent = str(row["user_agent"] or "-")
        if kind == "alb":
            origin = "https://shop.example:443" if target.startswith("/") else ""
            request = (
                f"{row['method']} {origin}{target} HTTP/1.1"
                if row["method"] else str(row["path"] or "-")
            )  # fmt: skip
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            written.append(
                _alb_line(stamp, f"{row['ip']}:51000", request.replace('"', '\\"'),
                          agent.replace("\\", "\\\\").replace('"', '\\"'), str(row["status"]),
                          str(row["bytes"]))
            )  # fmt: skip
        else:
            written.append(
                {"date": when.strftime("%Y-%m-%d"), "time": when.strftime("%H:%M:%S"),
                 "c-ip": str(row["ip"]), "cs-method": str(row["method"] or "-"),
                 "cs-uri-stem": str(row["path"] or "-"), "cs-uri-query": str(row["query"] or "-"),
                 "sc-status": str(row["status"]), "sc-bytes": str(row["bytes"]),
                 "cs(User-Agent)": quote(agent, safe="")}
            )  # fmt: skip
    rows_with_a_request = [r for r in original if r["method"] or kind == "alb"]
    data = (
        ("\n".join(written) + "\n").encode()  # type: ignore[arg-type]
        if kind == "alb"
        else _cloudfront([w for w, r in zip(written, original, strict=True) if r["method"]])  # type: ignore[misc]
    )
    path = tmp_path / f"{kind}.log.gz"
    path.write_bytes(gzip.compress(data))
    source = FileSource(path)
    assert source.log_layout is not None and source.log_layout.name == kind
    batches = list(source.read(Position(0, 1)))
    assert sum(b.decoded.rejects.num_rows for b in batches) == 0
    decoded = pa.concat_tables([b.decoded.events for b in batches]).select(COLUMNS).to_pylist()
    assert decoded == rows_with_a_request


def test_a_named_format_the_file_does_not_have_is_a_clear_error(tmp_path: Path) -> None:
    nginx = tmp_path / "access.log"
    nginx.write_text('1.2.3.4 - - [30/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "UA"\n')
    assert FileSource(nginx).log_layout is not None
    assert FileSource(nginx, web=WebLogOptions(format=LogFormat.NGINX)).log_layout is not None
    with pytest.raises(SourceError, match="not in the alb format: not an ALB access log line"):
        FileSource(nginx, web=WebLogOptions(format=LogFormat.ALB))
    with pytest.raises(SourceError, match="not in the cloudfront format"):
        FileSource(nginx, web=WebLogOptions(format=LogFormat.CLOUDFRONT))
    csv = tmp_path / "events.csv"
    csv.write_text("event_time,event_type\n")
    with pytest.raises(SourceError, match="not in the nginx format"):
        FileSource(csv, web=WebLogOptions(format=LogFormat.NGINX))
