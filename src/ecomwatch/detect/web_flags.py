"""What a web request is, as bits, for the web features: probes, attacks in the query string,
login and payment endpoints, static files, HEAD, no referrer (and, for any event, whether its
user agent claims a crawler and its address bears that out: `crawlers.py`).

Each request's flags are computed once, when the detector keeps it, with RE2 patterns run over
the batch's distinct paths and queries (a log repeats its paths: the work is per distinct value,
vectorized, never per request in Python); a detector's `WebFlagger` remembers the values of
earlier batches, so a path is matched once per run. Rules then count bits in SQL (`features.py`).

The patterns are common signatures: what scanners and exploit kits ask for (files that must
never be served, admin consoles of software the shop may not run, `../`, `UNION SELECT`,
`<script>`), matched on the path and query as logged, so percent-encoded forms (`%2e%2e%2f`,
`%27`, `%3Cscript`) are matched as well.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntFlag

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.decode.distinct_text import DistinctText, mask
from ecomwatch.detect.entity_keys import text_key


class WebFlag(IntFlag):
    WEB = 1  # a request from a web log (it has a status)
    STATIC = 2
    PAGE = 4
    HEAD = 8
    NO_REFERRER = 16
    ROBOTS_TXT = 32
    SENSITIVE_FILE = 64  # .env, .git/, wp-config.php, backups, keys
    ADMIN = 128  # admin consoles and their login pages
    TRAVERSAL = 256
    SQL_INJECTION = 512
    XSS = 1024
    LOGIN = 2048  # a POST to a login endpoint
    PAYMENT = 4096  # a POST to a checkout or payment endpoint
    CART = 8192  # a POST (or add-to-cart link) to a cart endpoint
    # Any event with a user agent (a shop's own too): `crawlers.py`
    CLAIMED_CRAWLER = 16384  # the user agent claims a major crawler
    VERIFIED_CRAWLER = 32768  # ...from an address in its operator's published ranges
    SPOOFED_CRAWLER = 65536  # ...from an address outside them
    PROXY = 131072  # CONNECT, or an absolute URL as the target: is this an open proxy?
    EXPLOIT = 262144  # a known exploit's request (webshells, phpunit eval-stdin, log4shell, …)


_SPACE = r"(?:\s|\+|%20|%09|%0a|%0d|/\*.*?\*/)"
_QUOTE = r"(?:'|%27|\"|%22)"
# On the path (percent-encoded as logged).
PATH_PATTERNS: dict[WebFlag, str] = {
    WebFlag.ROBOTS_TXT: r"^/robots\.txt$",
    WebFlag.SENSITIVE_FILE: (
        r"(?i)(?:^|/)(?:\.git|\.svn|\.hg|\.aws|\.ssh|\.env)(?:/|$)"
        r"|(?:^|/)(?:\.env(?:\.[\w-]+)?|\.ds_store|\.htaccess|\.htpasswd|id_rsa|\.npmrc"
        r"|\.bash_history|web\.config|wp-config\.php(?:\.\w+|~)?"
        r"|config\.(?:php|inc|json|yml|yaml)\.(?:bak|old|orig|save|swp|txt)|phpinfo\.php"
        r"|server-status|(?:backup|dump|db|database|site|www|wwwroot|htdocs)"
        r"\.(?:sql|zip|tar|tar\.gz|tgz|rar|7z|bak)|[\w.-]+\.(?:sql|bak|old|orig|swp))$"
    ),
    WebFlag.ADMIN: (
        # at the root or under one folder (/blog/wp-admin), not deep in a broken relative link
        r"(?i)^/(?:[\w.-]+/)?(?:wp-login\.php|wp-admin|xmlrpc\.php|phpmyadmin|pma|myadmin|mysqladmin"
        r"|adminer(?:\.php)?|administrator|admin(?:\.php)?|manager/html|cpanel|webadmin"
        r"|boaform|hnap1|solr/admin|actuator|jmx-console|console|vendor/phpunit|setup\.php"
        r"|install\.php|user/login)(?:/|$)"
    ),
    WebFlag.TRAVERSAL: (
        r"(?i)(?:\.|%2e|%252e|%%32%65){2}(?:/|\\|%2f|%5c|%252f)|/etc/(?:passwd|shadow|hosts)"
        r"|(?:win|boot)\.ini|/proc/self/"
    ),
    WebFlag.PROXY: r"(?i)^https?://|^[\w.-]+:\d+$",
    WebFlag.EXPLOIT: (
        r"(?i)eval-stdin\.php|/bin/(?:sh|bash)\b|\$\{jndi:|%24%7bjndi|invokefunction"
        r"|(?:^|/)(?:wso|c99|r57|alfa|shell_lock|wshell|b374k)[\w-]*\.php$|boaform/admin"
        r"|/hnap1/|/cgi-bin/(?:luci|;|.*\$\{)"
    ),
}
# On the query string.
QUERY_PATTERNS: dict[WebFlag, str] = {
    WebFlag.TRAVERSAL: PATH_PATTERNS[WebFlag.TRAVERSAL],
    WebFlag.SQL_INJECTION: (
        rf"(?i)union{_SPACE}+(?:all{_SPACE}+)?select|(?:\(|%28){_SPACE}*select{_SPACE}"
        rf"|{_QUOTE}{_SPACE}*(?:or|and){_SPACE}+{_QUOTE}?\w+{_QUOTE}?{_SPACE}*(?:=|%3d|like)"
        rf"|(?:or|and){_SPACE}+\d+{_SPACE}*(?:=|%3d){_SPACE}*\d+|(?:sleep|benchmark|pg_sleep)"
        rf"(?:\(|%28)|waitfor{_SPACE}+delay|information_schema|{_QUOTE}{_SPACE}*(?:--|#|%23)"
        rf"|;{_SPACE}*(?:drop|insert|delete|update){_SPACE}"
    ),
    WebFlag.EXPLOIT: (
        r"(?i)\$\{jndi:|%24%7bjndi|invokefunction|(?:^|&)(?:cmd|exec|command)=[^&]*"
        r"(?:wget|curl|chmod|/bin/|cd(?:\+|%20))|(?:wget|curl)(?:\+|%20)+https?(?::|%3a)"
    ),
    WebFlag.XSS: (
        r"(?i)(?:<|%3c|%253c)\s*/?(?:script|svg|img|iframe|body|object|embed)"
        r"|javascript(?::|%3a)|on(?:error|load|mouseover|focus)\s*(?:=|%3d)"
        r"|(?:alert|prompt|confirm)(?:\(|%28)|document(?:\.|%2e)cookie"
    ),
}
# Endpoints whose POSTs are hammered: logins (credential stuffing), payments (card testing),
# carts (hoarding).
POST_PATTERNS: dict[WebFlag, str] = {
    WebFlag.LOGIN: (
        r"(?i)(?:^|/)(?:wp-login\.php|xmlrpc\.php|login|signin|sign-in|log-in|loginpost"
        r"|authenticate|authentication|auth|session|sessions|my-account|oauth/token)(?:/|$|\.)"
    ),
    WebFlag.PAYMENT: (
        r"(?i)(?:^|/)(?:checkout|payment|payments|pay|charge|charges|payment-information"
        r"|place-?order|order|orders|stripe|braintree|paypal)(?:/|$|\.)"
    ),
    WebFlag.CART: r"(?i)(?:^|/)(?:cart|basket|bag)(?:/|$|\.)|add-to-cart|add_to_cart",
}
POST_QUERY_PATTERNS: dict[WebFlag, str] = {
    WebFlag.LOGIN: r"(?i)(?:^|&)(?:controller=authentication|action=login)(?:&|$)",
    WebFlag.PAYMENT: r"(?i)(?:^|&)(?:wc-ajax=checkout|controller=order)(?:&|$)",
    WebFlag.CART: r"(?i)(?:^|&)(?:add-to-cart=|wc-ajax=add_to_cart|controller=cart)",
}


def _bits(values: pa.Array, patterns: dict[WebFlag, str]) -> np.ndarray:
    """The OR of the flags whose pattern each distinct value matches."""
    out = np.zeros(len(values), dtype=np.int32)
    for flag, pattern in patterns.items():
        hit = pc.fill_null(pc.match_substring_regex(values, pattern), False)
        out |= np.where(hit.to_numpy(zero_copy_only=False), int(flag), 0).astype(np.int32)
    return out


class SeenText:
    """What was computed of the text values of earlier batches (a log repeats its paths): a
    batch's distinct values are looked up (`pc.index_in`, in C++) and only new ones computed.
    Holds at most `limit` values; past that it starts over."""

    def __init__(
        self, compute: Callable[[pa.Array], list[np.ndarray]], *, limit: int = 200_000
    ) -> None:
        self.compute = compute  # values → arrays with one entry per value
        self.limit = limit
        self.values = pa.array([], pa.string())
        self.results: list[np.ndarray] = compute(self.values)

    def of(self, values: pa.Array) -> list[np.ndarray]:
        """The computed arrays for these (distinct) values."""
        if len(self.values) + len(values) > self.limit:
            self.values, self.results = pa.array([], pa.string()), self.compute(self.values[:0])
        found = np.full(len(values), -1, dtype=np.int64)
        if len(self.values) and len(values):
            at = pc.index_in(values, value_set=self.values)
            found = pc.fill_null(at, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        new = np.flatnonzero(found < 0)
        if len(new):
            fresh = values.take(pa.array(new))
            found[new] = len(self.values) + np.arange(len(new))
            self.values = pa.concat_arrays([self.values, fresh])
            self.results = [
                np.concatenate(pair) for pair in zip(self.results, self.compute(fresh), strict=True)
            ]
        return [column[found] for column in self.results]


def _path_facts(paths: pa.Array) -> list[np.ndarray]:
    keys = np.array([text_key(v) for v in paths.to_pylist()], dtype=np.uint64)
    return [_bits(paths, PATH_PATTERNS), _bits(paths, POST_PATTERNS), keys]


def _query_facts(queries: pa.Array) -> list[np.ndarray]:
    add_to_cart = {WebFlag.CART: r"(?:^|&)add-to-cart="}  # a GET that changes the cart
    return [
        _bits(queries, QUERY_PATTERNS),
        _bits(queries, POST_QUERY_PATTERNS),
        _bits(queries, add_to_cart),
    ]


def _bit(condition: np.ndarray, flag: WebFlag) -> np.ndarray:
    return np.where(condition, int(flag), 0).astype(np.int32)


class WebFlagger:
    """Flags web requests batch after batch, remembering what the patterns said of the paths
    and queries already seen."""

    def __init__(self) -> None:
        self.paths = SeenText(_path_facts)
        self.queries = SeenText(_query_facts)

    def flags(self, events: pa.Table) -> tuple[pa.Array, pa.Array]:
        """(flags as int32, path key as uint64; null for events that are not web requests)."""
        n = events.num_rows
        if "status" not in events.column_names:
            return pa.array(np.zeros(n, np.int32)), pa.nulls(n, pa.uint64())
        web = mask(pc.is_valid(events["status"]))
        if not web.any():
            return pa.array(np.zeros(n, np.int32)), pa.nulls(n, pa.uint64())
        kind, method = DistinctText(events["request_kind"]), DistinctText(events["method"])
        flags = _bit(web, WebFlag.WEB)
        flags |= _bit(kind.is_one_of("static"), WebFlag.STATIC)
        flags |= _bit(kind.is_one_of("page"), WebFlag.PAGE)
        flags |= _bit(method.is_one_of("HEAD"), WebFlag.HEAD)
        flags |= _bit(method.is_one_of("CONNECT"), WebFlag.PROXY)
        flags |= _bit(mask(pc.is_null(events["referrer"])), WebFlag.NO_REFERRER)
        path, query = DistinctText(events["path"]), DistinctText(events["query"])
        path_bits, path_posts, path_keys = self.paths.of(path.values)
        query_bits, query_posts, query_carts = self.queries.of(query.values)
        flags |= path.per_row(path_bits) | query.per_row(query_bits) | query.per_row(query_carts)
        posted = method.is_one_of("POST", "PUT")
        endpoint = path.per_row(path_posts) | query.per_row(query_posts)
        flags |= np.where(posted, endpoint, 0).astype(np.int32)
        flags = np.where(web, flags, 0).astype(np.int32)
        wanted = path.valid & web
        keys = path.per_row(path_keys) if len(path_keys) else np.zeros(n, np.uint64)
        return pa.array(flags, pa.int32()), pa.array(keys, pa.uint64(), mask=~wanted)


def web_flags(events: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(flags as int32, path key as uint64; null for events that are not web requests)."""
    return WebFlagger().flags(events)
