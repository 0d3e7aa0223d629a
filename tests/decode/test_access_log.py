"""Web access logs: the real logs in ../shared (each line an event or a rejected row with its
reason) and the shapes real logs take, one by one."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pytest

from ecomwatch.decode.access_log import decode_access_log_chunk, sniff_access_log
from ecomwatch.decode.chunks import TextChunk
from ecomwatch.decode.csv_decoder import LayoutError
from ecomwatch.sources.base import Position
from ecomwatch.sources.files import FileSource, InputFormat

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "accesslogs"
# Lines each real log rejects, as read by hand: truncated lines (the mtld log has two lines cut
# and run into the next by a lone \r; the semicomplete log one user agent cut mid-quote).
REAL_REJECTS = {"mtld_site": 2, "semicomplete": 1}


def _decode(text: bytes, first: bytes | None = None):  # type: ignore[no-untyped-def]
    layout = sniff_access_log(first or text.split(b"\n", 1)[0])
    return decode_access_log_chunk(TextChunk(text, 0, 1), layout, source_name="t", source_id="s")


def _real_logs() -> list[Path]:
    return sorted(SHARED.iterdir()) if SHARED.is_dir() else []


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/accesslogs is not on this machine")
@pytest.mark.parametrize("path", _real_logs(), ids=lambda p: p.name.split("__")[0])
def test_every_real_log_decodes_with_its_rejects_counted(path: Path) -> None:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    source = FileSource(path)
    assert source.format is InputFormat.ACCESS_LOG
    events = rejects = 0
    reasons: set[str] = set()
    for batch in source.read(Position(0, 1)):
        events += batch.decoded.events.num_rows
        rejects += batch.decoded.rejects.num_rows
        reasons |= set(batch.decoded.rejects["reason"].to_pylist())
        assert all(batch.decoded.rejects["raw"].to_pylist())
    lines = [line for line in data.split(b"\n") if line.strip()]
    assert events + rejects == len(lines)
    expected = next((n for key, n in REAL_REJECTS.items() if path.name.startswith(key)), 0)
    assert rejects == expected
    assert reasons <= {"bad_log_line"}


def test_the_shapes_real_logs_take() -> None:
    lines = [
        # nginx combined; a time zone west of UTC
        b'203.0.113.9 - - [20/Feb/2016:00:00:45 -0500] "GET /p/1?color=red HTTP/1.1" 200 187 '
        b'"https://shop.example/" "Mozilla/5.0"',
        # Apache's escaped quote and backslash in the user agent
        b'198.51.100.2 - bob [20/Feb/2016:05:00:46 +0000] "GET /a.css HTTP/1.1" 304 - "-" '
        b'"say \\"hi\\" \\\\ x"',
        # nginx's \x22 escape is kept as written; no request line; TLS bytes on the HTTP port
        b'2001:db8::1 - - [20/Feb/2016:05:00:47 +0000] "GET /x HTTP/1.1" 404 5 "-" "a\\x22b"',
        b'192.0.2.1 - - [20/Feb/2016:05:00:48 +0000] "-" 400 0 "-" "-"',
        b'192.0.2.1 - - [20/Feb/2016:05:00:49 +0000] "\\x16\\x03\\x01\\x00\\xF4" 400 157 "-" "-"',
        # bytes that are not UTF-8
        b'192.0.2.3 - - [20/Feb/2016:05:00:50 +0000] "GET /caf\xe9 HTTP/1.1" 200 9 "-" "b"',
        # damaged: a bad time, a status that is no number, a line cut short
        b'192.0.2.4 - - [31/Feb/2016:99:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "c"',
        b'192.0.2.5 - - [20/Feb/2016:05:00:51 +0000] "GET / HTTP/1.1" OK 1 "-" "c"',
        b'192.0.2.6 - - [20/Feb/2016:05:00:52 +0000] "GET / HTTP/1.1" 200 1 "-" "cut',
        b"",
        b'192.0.2.7 - - [20/Feb/2016:05:00:53 +0000] "POST /wp-json/x HTTP/2.0" 201 3 "-" "d"',
    ]
    decoded = _decode(b"\n".join(lines) + b"\n")
    rows = {r["source_pos"]: r for r in decoded.events.to_pylist()}
    rejects = {r["line"]: r for r in decoded.rejects.to_pylist()}
    assert decoded.read == 10 and sorted(rejects) == [7, 8, 9]
    assert rejects[7]["reason"] == "bad_event_time" and rejects[8]["reason"] == "bad_log_line"
    assert rejects[9]["raw"].endswith('"cut')
    first = rows[1]
    assert first["event_time"] == datetime(2016, 2, 20, 5, 0, 45, tzinfo=UTC)
    assert (first["method"], first["path"], first["query"]) == ("GET", "/p/1", "color=red")
    assert (first["status"], first["bytes"], first["request_kind"]) == (200, 187, "page")
    assert first["referrer"] == "https://shop.example/" and first["event_type"] == "request"
    assert first["product_id"] is None and first["user_id"] is None
    assert rows[2]["user_agent"] == 'say "hi" \\ x' and rows[2]["bytes"] == 0
    assert rows[2]["request_kind"] == "static" and rows[2]["referrer"] is None
    assert rows[3]["ip"] == "2001:db8::1" and rows[3]["user_agent"] == "a\\x22b"
    assert (rows[4]["method"], rows[4]["path"], rows[4]["request_kind"]) == (None, None, "other")
    assert rows[5]["path"] == "\\x16\\x03\\x01\\x00\\xF4" and rows[5]["request_kind"] == "other"
    assert rows[6]["path"] == "/caf\\xe9"
    assert rows[11]["request_kind"] == "api" and rows[11]["status"] == 201


def test_vhost_and_common_layouts_and_lines_of_no_known_shape() -> None:
    vhost = _decode(
        b'shop.example:443 203.0.113.9 - - [20/Feb/2016:00:00:45 +0000] "GET / HTTP/1.1" 200 1 '
        b'"-" "ua"\nshop.example 203.0.113.8 - - [20/Feb/2016:00:00:46 +0000] "GET / HTTP/1.1" '
        b'200 1 "-" "ua"\n'
    )
    assert vhost.events["host"].to_pylist() == ["shop.example", "shop.example"]
    assert vhost.events["ip"].to_pylist() == ["203.0.113.9", "203.0.113.8"]
    common = _decode(b'203.0.113.9 - - [20/Feb/2016:00:00:45 +0000] "GET /x HTTP/1.0" 200 12\n')
    assert (
        common.events["path"].to_pylist() == ["/x"]
        and common.events["user_agent"][0].as_py() is None
    )
    with pytest.raises(LayoutError, match="access log"):
        sniff_access_log(b"event_time,event_type,product_id")


def test_a_lone_carriage_return_does_not_shift_the_lines_after_it() -> None:
    good = b'192.0.2.%d - - [20/Feb/2016:05:00:5%d +0000] "GET /%d HTTP/1.1" 200 1 "-" "u"'
    text = b"\n".join(
        [good % (1, 1, 1), b"192.0.2.2 - - [20/Fe\r" + good % (3, 3, 3), good % (4, 4, 4)]
    )
    decoded = _decode(text + b"\n", first=good % (1, 1, 1))
    assert decoded.events["source_pos"].to_pylist() == [1, 3]
    assert decoded.events["path"].to_pylist() == ["/1", "/4"]
    assert decoded.rejects["line"].to_pylist() == [2]


def test_a_log_is_known_by_its_first_line_whatever_its_name(tmp_path: Path) -> None:
    line = b'203.0.113.9 - - [20/Feb/2016:00:00:45 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"\n'
    rotated = tmp_path / "access.log.1"
    rotated.write_bytes(line * 3)
    packed = tmp_path / "access.log.2.gz"
    packed.write_bytes(gzip.compress(line * 2))
    for path, count in ((rotated, 3), (packed, 2)):
        source = FileSource(path)
        assert source.format is InputFormat.ACCESS_LOG
        assert sum(b.decoded.events.num_rows for b in source.read(Position(0, 1))) == count


def test_a_chunk_with_a_field_that_will_not_convert_gives_its_other_lines_the_same_events() -> None:
    # A chunk whose fields all convert as they are split takes the fast way; one field that is
    # not UTF-8 (or a status that is no number) sends the whole chunk the slow way, as bytes.
    clean = [
        b'203.0.113.9 - - [20/Feb/2016:00:00:45 -0500] "GET /p/1?c=red HTTP/1.1" 200 187 '
        b'"https://shop.example/" "Mozilla/5.0"',
        b'192.0.2.1 - - [20/Feb/2016:05:00:48 +0000] "-" 400 - "-" "-"',
        b'192.0.2.2 - - [20/Feb/2016:05:00:49 +0130] "HEAD /a.css HTTP/1.0" 304 0 "-" "b"',
        b'192.0.2.2 - - [20/Feb/2016:05:00:50 +0130] "POST /api/cart HTTP/2.0" 201 9 "-" "b"',
        b'192.0.2.3 - - [20/Feb/2016:05:00:51 +0000] "" 400 0 "-" "-"',
        b'192.0.2.4 - - [20/Feb/2016:05:00:52 +0000] "GET / HTTP/1.1" 1200 5 "-" "c"',
    ]
    for odd in (
        b'192.0.2.5 - - [20/Feb/2016:05:00:53 +0000] "GET /\xe9 HTTP/1.1" 200 1 "-" "d"',
        b'192.0.2.5 - - [20/Feb/2016:05:00:53 +0000] "GET / HTTP/1.1" OK 1 "-" "d"',
    ):
        fast = _decode(b"\n".join(clean) + b"\n")
        slow = _decode(b"\n".join([*clean, odd]) + b"\n")
        kept = slow.events.filter(pc.less_equal(slow.events["source_pos"], len(clean)))
        assert kept.to_pylist() == fast.events.to_pylist()
        assert fast.events.num_rows == len(clean) - 1 and fast.rejects["line"].to_pylist() == [6]
        assert slow.rejects["line"].to_pylist()[:1] == [6]
    row = fast.events.to_pylist()
    assert row[1]["bytes"] == 0 and row[1]["path"] is None and row[1]["request_kind"] == "other"
    assert row[2]["event_time"] == datetime(2016, 2, 20, 3, 30, 49, tzinfo=UTC)
