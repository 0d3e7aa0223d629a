"""The dashboard in a real headless Chromium (Debian's), driven by Playwright: it updates by
itself as events arrive, lists incidents a page at a time (filters, search, paging, the page's
height bounded), opens an incident and acknowledges it, opens an entity page, shows hostile
text as text, and saves screenshots."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.serve.conftest import start_server
from tests.serve.test_collector_api import event

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = '<img src=x onerror="window.__pwned = 1">'
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (make test installs it: apt-get install chromium)",
)


def test_dashboard_updates_live_and_escapes_attacker_text(tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    server = start_server(tmp_path / "lake", token=None)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server.url + "/")
            expect(page.locator("#status")).to_have_text("live", timeout=15_000)
            page.evaluate("window.__sameLoad = true")  # gone if the page reloads

            server.post_events([event(i, ip=f"192.0.2.{i % 50 + 1}") for i in range(120)])
            expect(page.locator("#events-total")).to_have_text("120", timeout=15_000)

            scraper = [
                {**event(i, ip="203.0.113.66"), "event_time": f"2019-11-01T11:00:{i // 60:02d}Z",
                 "user_session": "scrape", "product_id": 2_000_000 + i}
                for i in range(300)
            ]  # fmt: skip
            hoarder = [
                {**event(i, ip="198.51.100.99", kind="cart" if i % 2 == 0 else "remove_from_cart"),
                 "event_time": f"2019-11-01T11:{i // 6:02d}:{(i % 6) * 10:02d}Z",
                 "user_session": HOSTILE, "product_id": 5}
                for i in range(40)
            ]  # fmt: skip
            server.post_events(scraper + hoarder)
            feed = page.locator("#incidents-feed tr")
            expect(feed.filter(has_text="Scraper: 1 IP")).to_have_count(1, timeout=20_000)
            expect(feed.filter(has_text="Cart abuse: 1 IP")).to_have_count(1, timeout=20_000)
            expect(page.locator("#events-total")).to_have_text("460")
            assert page.evaluate("window.__sameLoad") is True  # updated without a reload
            # The traffic chart draws committed minutes: the first commit comes within 5 s.
            expect(page.locator("#pipeline")).not_to_have_text(re.compile(r"· 0$"), timeout=15_000)
            # The scraper's 300 views stand out in the chart as flagged traffic.
            page.wait_for_function(
                "document.getElementById('traffic-chart').data[1].y.reduce((a, b) => a + b, 0)"
                " >= 300",
                timeout=15_000,
            )
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert (tmp_path / "dashboard.png").stat().st_size > 10_000

            # The cart abuser's incident: its member's session is attacker text, shown as text.
            feed.filter(has_text="Cart abuse").click()
            expect(page.locator("#incident-title")).to_contain_text("Cart abuse: 1 IP")
            members = page.locator("#incident-members tbody tr")
            expect(members.first.locator(".entity")).to_have_text(f"session {HOSTILE}")
            assert page.locator("#incident img").count() == 0
            assert page.evaluate("window.__pwned") is None

            page.goto(server.url + "/#/")
            feed.filter(has_text="Scraper").click()
            expect(page.locator("#incident-state")).to_have_text("open")
            page.click("#incident-ack")
            expect(page.locator("#incident-state")).to_have_text("acknowledged", timeout=10_000)
            expect(page.locator("#incident-ack")).to_be_disabled()
            page.screenshot(path=str(tmp_path / "incident.png"), full_page=True)
            page.locator("#incident-members a.entity").first.click()
            expect(page.locator("#entity-title")).to_have_text("ip 203.0.113.66")
            expect(page.locator("#entity-alerts li")).to_have_count(1)
            browser.close()
    finally:
        server.stop()


def spaced_scrapers(count: int, first: int = 0) -> list[dict]:
    """`count` scrapers on unrelated networks, one every 20 minutes of event time: as many
    incidents."""
    rows = []
    for k in range(first, first + count):
        hour, minute = divmod(20 * k, 60)
        rows += [
            {**event(i, ip=f"203.{k}.7.66"),
             "event_time": f"2019-11-02T{hour:02d}:{minute:02d}:{i // 60:02d}Z",
             "user_session": f"scrape-{k}", "product_id": 3_000_000 + i,
             "user_agent": f"scraper/{k}.0"}
            for i in range(300)
        ]  # fmt: skip
    return rows


def test_the_incident_feed_pages_filters_and_keeps_its_height(tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    server = start_server(tmp_path / "lake", token=None)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server.url + "/")
            expect(page.locator("#status")).to_have_text("live", timeout=15_000)
            server.post_events(spaced_scrapers(22))
            info = page.locator("#page-info")
            expect(info).to_have_text("1-20 of 22", timeout=30_000)
            rows = page.locator("#incidents-feed tr")
            expect(rows).to_have_count(20)
            height = page.evaluate("document.documentElement.scrollHeight")

            server.post_events(spaced_scrapers(8, first=22))
            expect(info).to_have_text("1-20 of 30", timeout=30_000)
            assert page.evaluate("document.documentElement.scrollHeight") == height

            page.click("#page-older")
            expect(info).to_have_text("21-30 of 30")
            expect(rows).to_have_count(10)
            expect(page.locator("#page-older")).to_be_disabled()
            page.click("#page-newer")
            expect(info).to_have_text("1-20 of 30")

            page.fill("#filter-text", "203.5.7.66")
            expect(info).to_have_text("1-1 of 1", timeout=10_000)
            expect(rows).to_contain_text("Scraper: 1 IP")
            page.fill("#filter-text", "")
            expect(info).to_have_text("1-20 of 30", timeout=10_000)  # the search is cleared
            page.select_option("#filter-state", "open")
            expect(info).not_to_have_text("1-20 of 30", timeout=10_000)
            expect(rows.locator("td.state", has_text="resolved")).to_have_count(0)
            assert rows.count() >= 1
            for state in rows.locator("td.state").all_text_contents():
                assert state == "open"
            page.screenshot(path=str(tmp_path / "feed.png"))
            browser.close()
    finally:
        server.stop()


def test_dashboard_signs_in_with_a_token_and_out_again(tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    server = start_server(tmp_path / "lake")  # with a token
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(server.url + "/")
            expect(page.locator("#login")).to_be_visible(timeout=15_000)
            expect(page.locator("#status")).to_have_text("signed out")
            expect(page.locator("#overview")).to_be_hidden()

            page.fill("#token-input", "not-the-token")
            page.click("#login-form button")
            expect(page.locator("#login-message")).to_have_text("That token was refused.")

            assert server.token is not None
            page.fill("#token-input", server.token)
            page.click("#login-form button")
            expect(page.locator("#status")).to_have_text("live", timeout=15_000)
            expect(page.locator("#overview")).to_be_visible()
            server.post_events([event(i) for i in range(5)])
            expect(page.locator("#events-total")).to_have_text("5", timeout=15_000)

            page.click("#sign-out")
            expect(page.locator("#login")).to_be_visible(timeout=15_000)
            expect(page.locator("#login-message")).to_have_text("")
            assert page.evaluate("sessionStorage.getItem('ecomwatch-token')") is None
            browser.close()
    finally:
        server.stop()


def test_a_replayed_web_log_fills_the_web_panels(tmp_path: Path):
    """`replay access.log` into the service: the dashboard's web panels appear (hidden while
    only a shop's own events came), with the log's requests, status mix and probed paths."""
    import json
    import subprocess
    import sys

    from playwright.sync_api import expect, sync_playwright

    log = Path(__file__).resolve().parents[2] / "examples/rules/web-attacks.log"
    server = start_server(tmp_path / "lake", token=None)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server.url + "/")
            server.post_events([event(i) for i in range(10)])
            expect(page.locator("#events-total")).to_have_text("10", timeout=15_000)
            assert page.locator("#web-panels").is_hidden()

            sent = subprocess.run(
                [sys.executable, "-m", "ecomwatch.cli.main", "replay", str(log), "--to",
                 server.url, "--url-map", "woocommerce", "--json"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stderr
            figures = json.loads(sent.stdout)
            assert figures["sent"] == figures["accepted"] == 632
            expect(page.locator("#events-total")).to_have_text("642", timeout=15_000)
            expect(page.locator("#web-panels")).to_be_visible()
            mix = page.locator("#web-mix")
            expect(mix.locator("tr").first).to_have_text(re.compile(r"requests\s*632"))
            expect(page.locator("#web-top-4xx")).to_contain_text("/.env")
            status, summary = server.get_json("/api/summary")
            assert status == 200
            web = summary["web"]  # type: ignore[index]
            assert web["requests"] == 632 and sum(web["status"].values()) == 632
            # the web rules judge replayed requests as they judge a log's
            feed = page.locator("#incidents-feed tr")
            credentials = feed.filter(has_text="Credential-stuffing: 1 IP")
            expect(credentials).to_have_count(1, timeout=20_000)
            expect(feed.filter(has_text="Probe: 1 IP")).not_to_have_count(0)
            # … and raise what `ecomwatch detect` raises on the same file
            offline = tmp_path / "offline.jsonl"
            subprocess.run(
                [sys.executable, "-m", "ecomwatch.cli.main", "detect", str(log), "--alerts",
                 str(offline), "--url-map", "woocommerce"],
                capture_output=True, check=True,
            )  # fmt: skip
            lines = offline.read_text().splitlines()
            expected = {(a["rule"], a["entity"]) for a in map(json.loads, lines)}
            _, alerts = server.get_json("/api/alerts?limit=1000")
            live = {(a["rule"], a["entity"]) for a in alerts}  # type: ignore[union-attr]
            assert live == expected
            page.screenshot(path=str(tmp_path / "dashboard-web.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
