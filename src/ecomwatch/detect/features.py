"""The window features a rule condition may use, each an SQL aggregate over the window's events.

Every feature is computed per (key, window) over the rows of one window of one key: the columns
of the event schema plus `gap_s` (seconds since the key's previous event in the window),
`declared_bot` and `search_engine` (from the user agent, via crawlerdetect) and `baseline`
(the average number of events of the key's previous windows, for surges), `baseline_funnel`
(the share of carts and purchases in them) and `ip_age_s` (how long the IP has been known).
"""

from __future__ import annotations

FEATURES: dict[str, tuple[str, str]] = {
    "events": ("count(*)", "events in the window"),
    "views": ("count(*) FILTER (event_type = 'view')", "product views"),
    "carts": ("count(*) FILTER (event_type = 'cart')", "add-to-cart events"),
    "removes": ("count(*) FILTER (event_type = 'remove_from_cart')", "remove-from-cart events"),
    "purchases": ("count(*) FILTER (event_type = 'purchase')", "purchases"),
    "distinct_products": ("count(DISTINCT product_id)", "distinct products touched"),
    "distinct_categories": ("count(DISTINCT category_id)", "distinct categories touched"),
    "carted_products": (
        "count(DISTINCT product_id) FILTER (event_type = 'cart')",
        "distinct products put in the cart",
    ),
    "distinct_sessions": ("count(DISTINCT user_session)", "distinct sessions"),
    "distinct_users": ("count(DISTINCT user_id)", "distinct users"),
    "distinct_ips": ("count(DISTINCT ip_key)", "distinct IP addresses"),
    "distinct_user_agents": ("count(DISTINCT agent_key)", "distinct user agents"),
    "active_s": (
        "coalesce(epoch(max(event_time)) - epoch(min(event_time)), 0)",
        "seconds between the first and last event",
    ),
    "gap_cv": (
        "coalesce(stddev_pop(gap_s) / NULLIF(avg(gap_s), 0), 0)",
        "variation of the gaps between events (near 0: machine-regular timing)",
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
    }
)
