"""The dashboard in a real headless Chromium (Debian's), driven by Playwright: it updates by
itself as events arrive, shows alerts, opens an entity page, shows hostile text as text, and
saves a screenshot."""

from __future__ import annotations

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
            feed = page.locator("#alerts-feed li")
            expect(feed.filter(has_text="fast-scraper")).to_have_count(1, timeout=20_000)
            expect(feed.filter(has_text="cart-abuse")).to_have_count(1, timeout=20_000)
            expect(page.locator("#events-total")).to_have_text("460")
            assert page.evaluate("window.__sameLoad") is True  # updated without a reload

            # Attacker-controlled text is shown as text: no element made, no script run.
            hostile = feed.filter(has_text="cart-abuse").locator(".entity")
            expect(hostile).to_have_text(f"session {HOSTILE}")
            assert page.locator("#alerts-feed img").count() == 0
            assert page.evaluate("window.__pwned") is None

            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert (tmp_path / "dashboard.png").stat().st_size > 10_000

            feed.filter(has_text="fast-scraper").locator("a.entity").click()
            expect(page.locator("#entity-title")).to_have_text("ip 203.0.113.66")
            expect(page.locator("#entity-alerts li")).to_have_count(1)
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
