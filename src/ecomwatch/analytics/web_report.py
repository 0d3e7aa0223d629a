"""The report's web section, for lakes that hold web server requests: the status mix, what is
requested (pages, static files, APIs), the top paths, the paths answered 4xx most (what
scanners look for) and the share of requests from self-declared bots.

It reads the raw events' web columns (a shop's own events have none: no section), over the
same `events` view as the rest of the report.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from ecomwatch.detect.user_agents import UserAgentClassifier

TOP_PATHS = 10


def web_section(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The web figures of the `events` view, or None when it holds no web request."""
    names = {row[0] for row in con.execute("DESCRIBE events").fetchall()}
    if "status" not in names:
        return None
    total = int(con.execute("SELECT count(status) FROM events").fetchall()[0][0])
    if not total:
        return None
    statuses = dict(
        con.execute(
            "SELECT (status // 100) || 'xx', count(*) FROM events WHERE status IS NOT NULL "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    kinds = dict(
        con.execute(
            "SELECT coalesce(request_kind, 'other'), count(*) FROM events "
            "WHERE status IS NOT NULL GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    )
    top = con.execute(
        f"""SELECT path, count(*) AS requests, count(DISTINCT ip) AS ips,
                   count(*) FILTER (status >= 400) AS errors
            FROM events WHERE status IS NOT NULL AND request_kind IN ('page', 'api')
            GROUP BY path ORDER BY requests DESC, path LIMIT {TOP_PATHS}"""
    ).fetchall()
    failing = con.execute(
        f"""SELECT path, count(*) AS requests, count(DISTINCT ip) AS ips
            FROM events WHERE status BETWEEN 400 AND 499
            GROUP BY path ORDER BY requests DESC, path LIMIT {TOP_PATHS}"""
    ).fetchall()
    return {
        "requests": total,
        "status": statuses,
        "request_kinds": kinds,
        "bots": _bot_share(con, total),
        "top_paths": [{"path": p, "requests": n, "ips": ips, "errors": e} for p, n, ips, e in top],
        "top_4xx_paths": [{"path": p, "requests": n, "ips": ips} for p, n, ips in failing],
    }


def _bot_share(con: duckdb.DuckDBPyConnection, total: int) -> dict[str, Any]:
    """Requests and IPs from self-declared bots (each distinct user agent classified once)."""
    agents: pa.Table = con.sql(
        "SELECT user_agent, count(*) AS n FROM events WHERE status IS NOT NULL GROUP BY 1"
    ).to_arrow_table()
    classifier = UserAgentClassifier()
    flags = classifier.classify(pa.chunked_array([agents["user_agent"]]))
    counts = agents["n"].to_numpy()
    bots = flags.declared_bot.to_numpy(zero_copy_only=False)
    engines = flags.search_engine.to_numpy(zero_copy_only=False)
    con.register("bot_agents", agents.filter(flags.declared_bot).select(["user_agent"]))
    ips, known = con.execute(
        "SELECT count(DISTINCT ip) FILTER (user_agent IN (SELECT user_agent FROM bot_agents)), "
        "count(DISTINCT ip) FROM events WHERE status IS NOT NULL"
    ).fetchall()[0]
    con.unregister("bot_agents")
    bot_requests = int(counts[bots].sum())
    return {
        "requests": bot_requests,
        "request_share": round(bot_requests / total, 4),
        "search_engine_requests": int(counts[engines].sum()),
        "ips": ips,
        "ip_share": round(ips / known, 4) if known else None,
    }
