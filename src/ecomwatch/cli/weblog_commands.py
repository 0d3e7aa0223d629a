"""Web logs on the command line: the `--url-map` option, and `ecomwatch evaluate-logs`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ecomwatch.cli.detect_commands import RulesOption, load_rules_or_exit
from ecomwatch.config import Config
from ecomwatch.console import error_line
from ecomwatch.decode.web_logs import LogFormat

out = Console()
err = Console(stderr=True, soft_wrap=True)

UrlMapOption = Annotated[
    str | None,
    typer.Option(
        "--url-map",
        help="Web logs: which requests are views, carts, removes and purchases — a preset "
        "(magento2, woocommerce, shopify, prestashop) or a URL map file (TOML).",
    ),
]


FormatOption = Annotated[
    LogFormat | None,
    typer.Option(
        "--format",
        help="Web logs: nginx, apache, alb (AWS load balancer), cloudfront, or auto (each "
        "file's first lines tell; the default).",
    ),
]
SessionCookieOption = Annotated[
    str | None,
    typer.Option(
        "--session-cookie",
        help="Web logs that log cookies: the cookie holding the session id (PHPSESSID; a "
        "trailing * matches a name's start). Else IP + user agent + 30 min inactivity.",
    ),
]


def with_weblog(
    settings: Config,
    *,
    url_map: str | None = None,
    log_format: LogFormat | None = None,
    session_cookie: str | None = None,
) -> Config:
    """The configuration with the command line's web-log options over `[weblog]`, the URL
    map checked now (UrlMapError), before any work; a bad cookie name is a ConfigError."""
    from pydantic import ValidationError

    from ecomwatch.config import ConfigError, WeblogConfig
    from ecomwatch.decode.url_map import load_url_map

    given = {"url_map": url_map, "session_cookie": session_cookie}
    if log_format is not None:
        given["format"] = log_format.value
    update = {key: value for key, value in given.items() if value is not None}
    if update:
        try:
            weblog = WeblogConfig.model_validate(settings.weblog.model_dump() | update)
        except ValidationError as exc:
            problem = exc.errors()[0]
            option = str(problem["loc"][0]).replace("_", "-")
            raise ConfigError(f"--{option}: {problem['msg']}") from None
        settings = settings.model_copy(update={"weblog": weblog})
    if settings.weblog.url_map:
        load_url_map(settings.weblog.url_map)
    return settings


def evaluate_logs(
    inputs: Annotated[list[Path], typer.Argument(help="Web server access logs (.gz too).")],
    rules: RulesOption = None,
    crowdsec: Annotated[
        Path | None,
        typer.Option(
            "--crowdsec",
            help="Also replay each log through CrowdSec unpacked here (`make crowdsec`: "
            ".tools/crowdsec) and compare.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
) -> None:
    """Detection on real web logs with no labels: per file, the self-declared bots, the IPs
    each rule flags, and how many bots are still flagged once their user agents are masked."""
    from ecomwatch.detect.evaluate_logs import evaluate_log

    loaded = load_rules_or_exit(rules)
    missing = [str(p) for p in inputs if not p.is_file()]
    if missing:
        err.print(error_line(f"not a file: {', '.join(missing)}"))
        raise typer.Exit(2)
    if crowdsec is not None and not (crowdsec / "usr/bin/crowdsec").is_file():
        err.print(error_line(f"no CrowdSec in {crowdsec}: run `make crowdsec`"))
        raise typer.Exit(2)
    scores = []
    for path in inputs:
        err.print(f"evaluating {path.name} (twice: as logged, and with bots masked)")
        score = evaluate_log(path, loaded, Config())
        figures = score.to_json()
        if crowdsec is not None:
            from ecomwatch.benchmarks.crowdsec_compare import crowdsec_score

            err.print("  and through CrowdSec, twice")
            figures["crowdsec"] = crowdsec_score(
                path, score.flagged, score.bot_ips, score.bot_lines, crowdsec
            )
        scores.append(figures)
    if as_json:
        for figures in scores:
            print(json.dumps(figures))
        return
    out.print(scores_table(scores))
    for s in scores:
        rules_line = ", ".join(f"{rule} {n}" for rule, n in s["flagged_by_rule"].items())
        out.print(f"{_short(s['file'])}: IPs flagged by rule: {rules_line or 'none'}")
    if crowdsec is not None:
        out.print(crowdsec_table(scores))
        for s in scores:
            scenarios = s["crowdsec"]["by_scenario"]
            line = ", ".join(f"{name.split('/')[-1]} {n}" for name, n in scenarios.items())
            out.print(f"{_short(s['file'])}: CrowdSec IPs by scenario: {line or 'none'}")


def scores_table(scores: list[dict]) -> Table:  # type: ignore[type-arg]
    table = Table(title="ecomwatch on web logs (IPs flagged at medium or above)")
    for name in ("file", "requests", "IPs", "bot req %", "bot IPs %", "flagged IPs",
                 "not bots", "bots flagged, UA masked"):  # fmt: skip
        table.add_column(name, overflow="fold", justify="left" if name == "file" else "right")
    for s in scores:
        masked = s["masked_bots_flagged_share"]
        table.add_row(
            _short(s["file"]),
            f"{s['requests']:,}",
            f"{s['ips']:,}",
            _percent(s["bot_request_share"]),
            _percent(s["bot_ip_share"]),
            f"{s['flagged_ips']:,}",
            f"{s['flagged_non_bot_ips']:,}",
            f"{s['masked_bots_flagged']:,} of {s['bot_ips']:,} ({_percent(masked)} %)",
        )
    return table


def crowdsec_table(scores: list[dict]) -> Table:  # type: ignore[type-arg]
    table = Table(title="ecomwatch and CrowdSec on the same lines (IPs)")
    for name in ("file", "ecomwatch", "CrowdSec", "both", "only ecomwatch", "only CrowdSec",
                 "bots caught masked: ecomwatch", "CrowdSec"):  # fmt: skip
        table.add_column(name, justify="left" if name == "file" else "right")
    for s in scores:
        c = s["crowdsec"]
        table.add_row(
            _short(s["file"]), f"{s['flagged_ips']:,}", f"{c['flagged_ips']:,}",
            f"{c['both']:,}", f"{c['only_ecomwatch']:,}", f"{c['only_crowdsec']:,}",
            f"{s['masked_bots_flagged']:,} of {s['bot_ips']:,}",
            f"{c['masked_bots_flagged']:,} of {s['bot_ips']:,}",
        )  # fmt: skip
    return table


def _short(name: str) -> str:
    """A shared log's name without its provenance (`blog_2016__owner_repo_access.log`)."""
    return name.split("__")[0]


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f}"


crawlers_app = typer.Typer(
    help="The crawler address ranges that verify Googlebot, Applebot, GPTBot, Bingbot.",
    no_args_is_help=True,
)


@crawlers_app.command("list")
def list_crawlers(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Each operator's list in use: shipped snapshot or installed, its date and size."""
    from ecomwatch.detect.crawlers import CLAIMS, load_lists

    lists = load_lists()
    rows: list[dict[str, Any]] = [
        {
            "operator": operator,
            "created": lists[operator].created if operator in lists else None,
            "prefixes": len(lists[operator].networks) if operator in lists else 0,
            "source": lists[operator].origin if operator in lists else None,
        }
        for operator in CLAIMS
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="crawler ranges (a claim without a list is neither verified nor a spoof)")
    for name in ("operator", "created", "prefixes", "source"):
        table.add_column(name)
    for row in rows:
        table.add_row(row["operator"], row["created"] or "—", str(row["prefixes"]),
                      row["source"] or "none: `ecomwatch crawlers update FILE`")  # fmt: skip
    out.print(table)


@crawlers_app.command("update")
def update_crawlers(
    files: Annotated[
        list[Path],
        typer.Argument(help="Lists downloaded from the operators (googlebot.json, …)."),
    ],
) -> None:
    """Check and install newer crawler range lists (each file must hold `prefixes`)."""
    from ecomwatch.detect.crawlers import CrawlerListError, install

    failed = False
    for path in files:
        try:
            installed = install(path)
        except (CrawlerListError, OSError) as exc:
            err.print(error_line(exc))
            failed = True
            continue
        out.print(
            f"{installed.operator}: {len(installed.networks):,} ranges of {installed.created} "
            f"installed → {installed.origin}"
        )
    if failed:
        raise typer.Exit(2)
