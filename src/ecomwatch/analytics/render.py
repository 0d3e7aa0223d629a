"""Render a report: terminal tables (Rich) or a self-contained HTML page (Plotly, offline)."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
from plotly.io import to_html
from rich.console import Console
from rich.table import Table

from ecomwatch.console import print_table

_ROWS = 10


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(
            column,
            justify="left" if column in ("category", "brand", "hour", "path") else "right",
        )
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    return table


def print_report(report: dict[str, Any], console: Console) -> None:
    totals = report["totals"]
    if "excluded_flagged_events" in report:
        left_out = report["excluded_flagged_events"]
        share = left_out / (left_out + totals["events"]) if left_out + totals["events"] else 0.0
        console.print(
            f"flagged traffic left out: {left_out:,} events ({share:.1%}) of IPs, sessions and "
            "users alerted at medium or above"
        )
    summary = Table(title="Totals", title_justify="left", show_header=False)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for key in ("events", "users", "sessions", "revenue", "first_event", "last_event", "rejected"):
        summary.add_row(key, _fmt(totals[key]))
    for kind, count in totals["by_type"].items():
        summary.add_row(f"  {kind}", _fmt(count))
    print_table(console, summary)
    funnel = report["funnel"]
    print_table(
        console,
        _table(
            "Conversion funnel (sessions)",
            [funnel],
            [
                "sessions_view",
                "sessions_cart",
                "sessions_purchase",
                "view_to_cart",
                "cart_to_purchase",
                "view_to_purchase",
            ],
        ),
    )
    abandonment = report["cart_abandonment"]
    print_table(
        console,
        _table(
            "Cart abandonment",
            [abandonment],
            ["carted_sessions", "abandoned_sessions", "rate", "abandoned_value"],
        ),
    )
    per_key = ["views", "carts", "purchases", "revenue", "conversion", "buyers"]
    print_table(
        console,
        _table(
            f"Top categories by revenue (of {len(report['categories'])})",
            report["categories"][:_ROWS],
            ["category", *per_key],
        ),
    )
    print_table(
        console,
        _table(
            f"Top brands by revenue (of {len(report['brands'])})",
            report["brands"][:_ROWS],
            ["brand", *per_key],
        ),
    )
    print_table(
        console,
        _table(
            "Top products by revenue",
            report["top_products"]["by_revenue"][:_ROWS],
            ["product_id", "views", "purchases", "revenue", "category", "brand"],
        ),
    )
    if report.get("web"):
        _print_web(report["web"], console)
    hourly = report["hourly"]
    if hourly:
        print_table(
            console,
            _table(
                f"Traffic per hour (last {min(len(hourly), 24)} of {len(hourly)})",
                hourly[-24:],
                ["hour", "events", "views", "carts", "purchases", "users", "sessions"],
            ),
        )


def _print_web(web: dict[str, Any], console: Console) -> None:
    bots = web["bots"]
    mix = Table(title="Web requests", title_justify="left", show_header=False)
    mix.add_column("metric")
    mix.add_column("value", justify="right")
    mix.add_row("requests", _fmt(web["requests"]))
    for status, count in web["status"].items():
        mix.add_row(f"  {status}", _fmt(count))
    for kind, count in web["request_kinds"].items():
        mix.add_row(f"  {kind}", _fmt(count))
    share = bots["request_share"]
    mix.add_row("from self-declared bots", f"{_fmt(bots['requests'])} ({share:.1%})")
    mix.add_row("  of them search engines", _fmt(bots["search_engine_requests"]))
    ip_share = bots["ip_share"] or 0.0
    mix.add_row("bot IPs", f"{_fmt(bots['ips'])} ({ip_share:.1%})")
    print_table(console, mix)
    print_table(console, _table("Top pages and API paths", web["top_paths"],
                                ["path", "requests", "ips", "errors"]))  # fmt: skip
    if web["top_4xx_paths"]:
        print_table(console, _table("Paths answered 4xx most (what scanners look for)",
                                    web["top_4xx_paths"], ["path", "requests", "ips"]))  # fmt: skip


def _figure(fig: go.Figure, title: str, *, first: bool) -> str:
    fig.update_layout(title=title, height=380, margin={"l": 40, "r": 20, "t": 50, "b": 40})
    # The first chart carries plotly.js inline, so the page opens without a network.
    return to_html(fig, full_html=False, include_plotlyjs=first)


def html_report(report: dict[str, Any], *, title: str = "ecomwatch report") -> str:
    hourly = report["hourly"]
    hours = [h["hour"] for h in hourly]
    traffic = go.Figure(
        [
            go.Scatter(x=hours, y=[h[k] for h in hourly], name=k, mode="lines")
            for k in ("views", "carts", "purchases")
        ]
    )
    funnel = report["funnel"]
    funnel_fig = go.Figure(
        go.Funnel(
            y=["viewed", "carted", "purchased"],
            x=[funnel["sessions_view"], funnel["sessions_cart"], funnel["sessions_purchase"]],
        )
    )
    cats = report["top_level_categories"][:15]
    cat_fig = go.Figure(
        go.Bar(x=[str(c["category"]) for c in cats], y=[c["revenue"] for c in cats])
    )
    brands = report["brands"][:15]
    brand_fig = go.Figure(
        go.Bar(x=[str(b["brand"]) for b in brands], y=[b["revenue"] for b in brands])
    )
    charts = [
        _figure(traffic, "Events per hour", first=True),
        _figure(funnel_fig, "Conversion funnel (sessions)", first=False),
        _figure(cat_fig, "Revenue by top-level category", first=False),
        _figure(brand_fig, "Revenue by brand (top 15)", first=False),
    ]
    totals = report["totals"]
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(totals[k]))}</td></tr>"
        for k in ("events", "users", "sessions", "revenue", "first_event", "last_event", "rejected")
    )
    abandonment = report["cart_abandonment"]
    products = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(_fmt(p[c]))}</td>"
            for c in ("product_id", "views", "purchases", "revenue", "category", "brand")
        )
        + "</tr>"
        for p in report["top_products"]["by_revenue"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}
td,th{{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:right}}
th{{text-align:left}}</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{facts}</table>
<p>Cart abandonment: {html.escape(_fmt(abandonment["abandoned_sessions"]))} of
{html.escape(_fmt(abandonment["carted_sessions"]))} carted sessions
(rate {html.escape(_fmt(abandonment["rate"]))}),
abandoned value {html.escape(_fmt(abandonment["abandoned_value"]))}.</p>
{"".join(charts)}
<h2>Top products by revenue</h2>
<table><tr><th>product</th><th>views</th><th>purchases</th><th>revenue</th><th>category</th><th>brand</th></tr>
{products}</table>
</body></html>
"""
