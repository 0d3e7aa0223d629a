"""The window features a rule condition may use, each an SQL aggregate over the window's events.

Every feature is computed per (key, window) over the rows of one window of one key: the columns
of the event schema plus `gap_s` (seconds since the key's previous event in the window),
`declared_bot` and `search_engine` (from the user agent, via crawlerdetect), `popularity`
(of the event's product, `product_popularity`) and `baseline`
(the average number of events of the key's previous windows, for surges), `baseline_funnel`
(the share of carts and purchases in them) and `ip_age_s` (how long the IP has been known);
and, for web requests, `status`, `path_key` and `web_flags` (what a request is: `web_flags.py`).
"""

from __future__ import annotations

from ecomwatch.detect.web_flags import WebFlag
from ecomwatch.schema import EVENT_TYPES

# The kept events hold each event's type as a small number too (`event_code`): a query's
# filters compare a number per row instead of a string.
EVENT_CODES: dict[str, int] = {name: code for code, name in enumerate(EVENT_TYPES)}


def is_event(*types: str) -> str:
    """SQL: the row is an event of one of `types`."""
    codes = ", ".join(str(EVENT_CODES[t]) for t in types)
    return f"event_code = {codes}" if len(types) == 1 else f"event_code IN ({codes})"


FEATURES: dict[str, tuple[str, str]] = {
    "events": ("count(*)", "events in the window"),
    "views": (f"count(*) FILTER ({is_event('view')})", "product views"),
    "carts": (f"count(*) FILTER ({is_event('cart')})", "add-to-cart events"),
    "removes": (f"count(*) FILTER ({is_event('remove_from_cart')})", "remove-from-cart events"),
    "purchases": (f"count(*) FILTER ({is_event('purchase')})", "purchases"),
    "distinct_products": ("count(DISTINCT product_id)", "distinct products touched"),
    "distinct_categories": ("count(DISTINCT category_id)", "distinct categories touched"),
    "carted_products": (
        f"count(DISTINCT product_id) FILTER ({is_event('cart')})",
        "distinct products put in the cart",
    ),
    "distinct_sessions": ("count(DISTINCT user_session)", "distinct sessions"),
    "distinct_users": ("count(DISTINCT user_id)", "distinct users"),
    "distinct_ips": ("count(DISTINCT ip_key)", "distinct IP addresses"),
    "distinct_user_agents": ("count(DISTINCT agent_key)", "distinct user agents"),
    "active_s": (
        "coalesce(max(t_us) / 1e6 - min(t_us) / 1e6, 0)",
        "seconds between the first and last event",
    ),
    "gap_cv": (
        "coalesce(stddev_pop(gap_s) / NULLIF(avg(gap_s), 0), 0)",
        "variation of the gaps between events (near 0: machine-regular timing)",
    ),
    "ascending_share": (
        "coalesce(avg(ascending_step), 0)",
        "share of views whose product id is above the one before (near 1: a walk in id order)",
    ),
    "ipv6": (
        # Keys of addresses that are not IPv4 have their top bit set (`entity_keys`).
        "max(CASE WHEN subnet_key >= 9223372036854775808 THEN 1 ELSE 0 END)",
        "1 if the addresses are IPv6 (a subnet of them: one prefix, `detect.ipv6_prefix`)",
    ),
    "declared_bot": (
        "max(CASE WHEN declared_bot THEN 1 ELSE 0 END)",
        "1 if a crawler, headless browser or HTTP library user agent was seen",
    ),
    "search_engine": (
        "max(CASE WHEN search_engine THEN 1 ELSE 0 END)",
        "1 if a well-known search engine crawler user agent was seen",
    ),
    "baseline": (
        "max(baseline)",
        "average events of this key's earlier windows (0 before there are any)",
    ),
    "baseline_funnel": (
        "max(baseline_funnel)",
        "share of carts and purchases among the events of this key's earlier windows",
    ),
    "ip_age_s": (
        "coalesce(max(ip_age_s), 0)",
        "seconds since the IP was first seen (the oldest IP of a group; memory: 24 h)",
    ),
}


def _flagged(flag: WebFlag, *, extra: str = "") -> str:
    return f"count(*) FILTER ((web_flags & {int(flag)}) <> 0{extra})"


def _share_of(count_sql: str) -> str:
    """A count as a share of the window's web requests (0 without any)."""
    return f"coalesce({count_sql} / NULLIF({_flagged(WebFlag.WEB)}, 0), 0)"


def _share(flag: WebFlag) -> str:
    return _share_of(_flagged(flag))


def _any(flag: WebFlag) -> str:
    return f"max(CASE WHEN (web_flags & {int(flag)}) <> 0 THEN 1 ELSE 0 END)"


_CLIENT_ERRORS = "count(*) FILTER (status BETWEEN 400 AND 499)"


# Features of web requests (a web log's events; 0 for a shop's own events): `web_flags`.
WEB_FEATURES: dict[str, tuple[str, str]] = {
    "requests": (_flagged(WebFlag.WEB), "web requests"),
    "client_errors": (_CLIENT_ERRORS, "requests answered 4xx"),
    "server_errors": ("count(*) FILTER (status >= 500)", "requests answered 5xx"),
    "client_error_share": (_share_of(_CLIENT_ERRORS), "share of web requests answered 4xx"),
    "distinct_paths": ("count(DISTINCT path_key)", "distinct paths requested"),
    "page_requests": (_flagged(WebFlag.PAGE), "requests for pages (not static files or APIs)"),
    "static_share": (_share(WebFlag.STATIC), "share of requests for static files"),
    "head_share": (_share(WebFlag.HEAD), "share of HEAD requests"),
    "no_referrer_share": (_share(WebFlag.NO_REFERRER), "share of requests without a referrer"),
    "robots_txt": (_any(WebFlag.ROBOTS_TXT), "1 if /robots.txt was fetched"),
    "sensitive_probes": (
        _flagged(WebFlag.SENSITIVE_FILE),
        "requests for files no site serves (.env, .git/, wp-config.php, backups, keys)",
    ),
    "sensitive_hits": (
        _flagged(WebFlag.SENSITIVE_FILE, extra=" AND status BETWEEN 200 AND 299"),
        "of those, answered 2xx (the file may have been served)",
    ),
    "admin_probes": (
        _flagged(WebFlag.ADMIN, extra=" AND status >= 400"),
        "requests for admin consoles (wp-admin, phpMyAdmin, …) answered 4xx or 5xx",
    ),
    "traversal_probes": (_flagged(WebFlag.TRAVERSAL), "path traversal (../, /etc/passwd)"),
    "sqli_probes": (_flagged(WebFlag.SQL_INJECTION), "SQL injection in the query string"),
    "xss_probes": (_flagged(WebFlag.XSS), "script injection (XSS) in the query string"),
    "proxy_probes": (
        _flagged(WebFlag.PROXY),
        "requests that use the site as a proxy (CONNECT, an absolute URL as the target)",
    ),
    "exploit_probes": (
        _flagged(WebFlag.EXPLOIT),
        "requests of known exploits (webshells, phpunit eval-stdin, log4shell, command injection)",
    ),
    "login_posts": (_flagged(WebFlag.LOGIN), "POSTs to login endpoints"),
    "failed_logins": (
        _flagged(WebFlag.LOGIN, extra=" AND status IN (200, 401, 403, 429)"),
        "of those, not redirected onward (a failed login page, 401, 403, 429)",
    ),
    "payment_posts": (_flagged(WebFlag.PAYMENT), "POSTs to checkout and payment endpoints"),
    "cart_posts": (_flagged(WebFlag.CART), "POSTs (or add-to-cart links) to cart endpoints"),
}
FEATURES.update(WEB_FEATURES)


# Crawler claims checked against the operators' published address ranges (`crawlers.py`).
CRAWLER_FEATURES: dict[str, tuple[str, str]] = {
    "claimed_crawler": (
        _any(WebFlag.CLAIMED_CRAWLER),
        "1 if a user agent claimed Googlebot, Bingbot, Applebot or GPTBot",
    ),
    "verified_crawler": (
        _any(WebFlag.VERIFIED_CRAWLER),
        "1 if such a claim came from an address in its operator's published ranges",
    ),
    "spoofed_crawler": (
        _any(WebFlag.SPOOFED_CRAWLER),
        "1 if such a claim came from an address outside them (an impostor)",
    ),
}
FEATURES.update(CRAWLER_FEATURES)

# How popular the viewed products are (`product_popularity`: the share of the shop's products
# viewed less over the past day, refreshed hourly, 10 to 70 minutes old; null while unknown).
LONG_TAIL = 0.5  # the less viewed half of the products the shop has shown
POPULARITY_FEATURES_SQL: dict[str, tuple[str, str]] = {
    "popularity": (
        f"coalesce(avg(popularity) FILTER ({is_event('view')}), -1)",
        "how popular the viewed products are: the share of the shop's products viewed less "
        "over the past day (0: the least viewed, near 1: the hits; -1: not known yet)",
    ),
    "longtail_views": (
        f"count(*) FILTER ({is_event('view')} AND popularity < {LONG_TAIL})",
        "views of long-tail products (the less viewed half of the shop's products)",
    ),
    "longtail_share": (
        f"coalesce(avg(CASE WHEN popularity < {LONG_TAIL} THEN 1.0 ELSE 0.0 END) "
        f"FILTER ({is_event('view')} AND popularity IS NOT NULL), 0)",
        "share of views on long-tail products (the less viewed half of the shop's products)",
    ),
}
FEATURES.update(POPULARITY_FEATURES_SQL)
POPULARITY_FEATURES = frozenset(POPULARITY_FEATURES_SQL)

# Counts of the rows that meet a predicate (`count(*) FILTER (...)`): a window can only count
# one or more if it holds such a row, which lets a rule skip the windows with none (`rules`),
# and a judging round skip a rule whose rows hold fewer than it counts (`ROUND_COUNTED_ROWS`).
ROUND_COUNTED_ROWS: dict[str, str] = {
    name: sql.removeprefix("count(*) FILTER (")[:-1]
    for name, (sql, _) in FEATURES.items()
    if sql.startswith("count(*) FILTER (") and sql.endswith(")")
}
# Windows are not screened by the rows nearly every window of a shop's traffic holds (product
# views, web requests): nothing would be skipped, and finding the windows costs a scan.
_EVERYWHERE = {"views", "requests", "page_requests"}
COUNTED_ROWS: dict[str, str] = {
    name: sql for name, sql in ROUND_COUNTED_ROWS.items() if name not in _EVERYWHERE
}

# Plain counts and extremes: one pass, no per-key sets or ordering. Rules test these first.
CHEAP_FEATURES = frozenset(
    {
        "events",
        "views",
        "carts",
        "removes",
        "purchases",
        "active_s",
        "declared_bot",
        "search_engine",
        "baseline",
        "baseline_funnel",
        "ipv6",
        *POPULARITY_FEATURES,
        *(name for name in WEB_FEATURES if name != "distinct_paths"),
        *CRAWLER_FEATURES,
    }
)
