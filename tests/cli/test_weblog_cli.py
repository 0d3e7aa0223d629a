"""A web log through the CLI: `run --url-map` gives the report a funnel, a rerun resumes with
the same sessions, and a bad map is a usage error before any work."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from ecomwatch.lake.open import open_lake


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def _shop_log(path: Path) -> Path:
    """Two shoppers on a WooCommerce shop; the second comes back after an hour."""
    lines = []
    visits = [
        ("198.51.100.7", "13:00", "GET /product/blue-shirt/ HTTP/1.1", 200),
        ("198.51.100.7", "13:01", "GET /shop/?add-to-cart=42 HTTP/1.1", 302),
        ("198.51.100.7", "13:03", "GET /checkout/order-received/7/?key=wc_order_a HTTP/1.1", 200),
        ("203.0.113.5", "13:02", "GET /product/red-shirt/ HTTP/1.1", 200),
        ("203.0.113.5", "13:04", "GET /wp-content/themes/x/style.css HTTP/1.1", 200),
        ("203.0.113.5", "14:10", "GET /product/red-shirt/ HTTP/1.1", 200),
        ("203.0.113.5", "14:11", "GET /shop/?add-to-cart=43 HTTP/1.1", 302),
    ]
    for ip, at, request, status in sorted(visits, key=lambda v: v[1]):
        lines.append(
            f'{ip} - - [10/Oct/2025:{at}:00 +0000] "{request}" {status} 100 "-" '
            '"Mozilla/5.0 (Windows NT 10.0; Win64; x64)"'
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_with_a_url_map_gives_the_report_its_funnel(tmp_path: Path) -> None:
    log = _shop_log(tmp_path / "access.log")
    lake = tmp_path / "lake"
    ran = _cli("run", str(log), "--lake", str(lake), "--url-map", "woocommerce", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["accepted"] == 7
    report = json.loads(_cli("report", "--lake", str(lake), "--format", "json").stdout)
    assert report["totals"]["by_type"] == {
        "view": 3,
        "cart": 2,
        "remove_from_cart": 0,
        "purchase": 1,
    }
    assert report["totals"]["events"] == 7  # and one request for a style sheet
    assert report["totals"]["sessions"] == 3  # the second shopper's return is a new session
    funnel = report["funnel"]
    assert (funnel["sessions_view"], funnel["sessions_cart"], funnel["sessions_purchase"]) == (
        3, 2, 1,
    )  # fmt: skip
    table = open_lake(str(lake))
    sessions = [s for f in table.data_files() for s in pq.read_table(f)["user_session"].to_pylist()]
    table.close()
    assert len(set(sessions)) == 3 and None not in sessions


def test_a_bad_url_map_is_a_usage_error(tmp_path: Path) -> None:
    log = _shop_log(tmp_path / "access.log")
    bad = tmp_path / "map.toml"
    bad.write_text('name = "m"\n[[event]]\ntype = "view"\n')
    ran = _cli("run", str(log), "--lake", str(tmp_path / "lake"), "--url-map", str(bad))
    assert ran.returncode == 2
    assert "give a path or a query" in ran.stderr
    assert not (tmp_path / "lake").exists()


def _cloudfront_log(path: Path) -> Path:
    """Two shoppers behind one office address and browser: only their cookies tell them apart."""
    fields = "date time c-ip cs-method cs-uri-stem cs-uri-query sc-status sc-bytes "
    fields += "cs(User-Agent) cs(Cookie)"
    agent = "Mozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64)"
    rows = [
        ("10:00:00", "/product/blue-shirt/", "-", "PHPSESSID=aaa"),
        ("10:00:05", "/product/red-shirt/", "-", "PHPSESSID=bbb;%20theme=dark"),
        ("10:01:00", "/shop/", "add-to-cart=42", "PHPSESSID=aaa"),
        ("10:01:30", "/shop/", "add-to-cart=43", "theme=dark;%20PHPSESSID=bbb"),
    ]
    lines = ["#Version: 1.0", f"#Fields: {fields}"]
    lines += [
        f"2026-11-30\t{at}\t192.0.2.10\tGET\t{stem}\t{query}\t200\t100\t{agent}\t{cookie}"
        for at, stem, query, cookie in rows
    ]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_cloudfront_sessions_from_a_cookie(tmp_path: Path) -> None:
    log = _cloudfront_log(tmp_path / "E2ABC.2026-11-30-10.d1b2c3.gz")
    runs = {}
    for name, extra in (("cookie", ["--session-cookie", "PHPSESSID"]), ("heuristic", [])):
        lake = tmp_path / name
        ran = _cli("run", str(log), "--lake", str(lake), "--format", "cloudfront",
                   "--url-map", "woocommerce", "--json", *extra)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["accepted"] == 4
        runs[name] = json.loads(_cli("report", "--lake", str(lake), "--format", "json").stdout)
    assert runs["cookie"]["totals"]["sessions"] == 2
    assert runs["cookie"]["funnel"]["sessions_cart"] == 2
    assert runs["heuristic"]["totals"]["sessions"] == 1  # one address, one browser


def test_bad_web_log_options_are_usage_errors(tmp_path: Path) -> None:
    log = _shop_log(tmp_path / "access.log")
    lake = str(tmp_path / "lake")
    bad_cookie = _cli("run", str(log), "--lake", lake, "--session-cookie", "a b")
    assert bad_cookie.returncode == 2
    assert "--session-cookie: String should match pattern" in bad_cookie.stderr
    bad_format = _cli("run", str(log), "--lake", lake, "--format", "iis")
    assert bad_format.returncode == 2 and "'iis' is not one of" in bad_format.stderr
    wrong = _cli("run", str(log), "--lake", lake, "--format", "alb")
    assert wrong.returncode == 1
    assert "not in the alb format: not an ALB access log line" in " ".join(wrong.stderr.split())
