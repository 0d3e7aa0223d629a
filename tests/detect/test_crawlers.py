"""Verified crawlers: a claimed Googlebot is believed from Google's published ranges only; lists
are checked before they are installed; a shop's own events with ip and user agent count too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ecomwatch.detect.crawlers import (
    CrawlerListError,
    CrawlerVerifier,
    install,
    load_lists,
    parse_list,
)
from ecomwatch.detect.detector import Detector
from ecomwatch.detect.rules import load_rules
from ecomwatch.schema import LABEL_TYPE
from ecomwatch.testing import events_table

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
T0 = datetime(2025, 11, 3, 10, 0, tzinfo=UTC)
APPLEBOT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)"
)
CHROME = "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"


def _flags(rows: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    agents = pa.chunked_array([pa.array([a for a, _ in rows]).dictionary_encode().cast(LABEL_TYPE)])
    ips = pa.chunked_array([pa.array([ip for _, ip in rows])])
    return CrawlerVerifier().flags(agents, ips)


def test_a_claim_is_verified_inside_the_operators_ranges_and_a_spoof_outside() -> None:
    flags = _flags([
        (GOOGLEBOT, "66.249.66.1"),  # Google's range
        (GOOGLEBOT, "203.0.113.9"),  # not
        (GOOGLEBOT, "2001:4860:4801:10::1"),  # Google's IPv6 range
        (BINGBOT, "157.55.39.1"),  # no Bing list shipped: neither
        (CHROME, "66.249.66.1"),  # claims nothing
        (GOOGLEBOT, "66.249.79.100"),  # Google's block, not in today's list: neither
        (APPLEBOT, "17.241.219.13"),  # Apple's /8, not in the list: neither
        (APPLEBOT, "198.51.100.3"),  # a spoof
    ])  # fmt: skip
    assert flags.claimed.tolist() == [True, True, True, True, False, True, True, True]
    assert flags.verified.tolist() == [True, False, True, False, False, False, False, False]
    assert flags.spoofed.tolist() == [False, True, False, False, False, False, False, True]


def test_the_shipped_snapshots_are_dated_lists() -> None:
    lists = load_lists()
    assert {"googlebot", "applebot", "gptbot"} <= set(lists)
    assert all(lst.created[:4] >= "2025" and len(lst.networks) >= 20 for lst in lists.values())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html>moved</html>", "not JSON"),
        ('{"creationTime": "2026-10-01T00:00:00", "prefixes": []}', "no `prefixes`"),
        ('{"creationTime": "2026-10-01T00:00:00"}', "no `prefixes`"),
        ('{"prefixes": [{"ipv4Prefix": "66.249.64.0/33"}]}', "not an address range"),
    ],
)
def test_a_list_without_ranges_is_refused(body: str, message: str) -> None:
    with pytest.raises(CrawlerListError, match=message):
        parse_list(body, operator="googlebot", origin="googlebot.json")


def test_update_installs_a_newer_list_and_refuses_an_empty_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECOMWATCH_CRAWLERS_DIR", str(tmp_path / "installed"))
    bing = tmp_path / "bingbot.json"
    bing.write_text(json.dumps({"creationTime": "2026-11-30T00:00:00",
                                "prefixes": [{"ipv4Prefix": "157.55.39.0/24"}]}))  # fmt: skip
    install(bing)
    assert load_lists()["bingbot"].origin.endswith("installed/bingbot.json")
    assert CrawlerVerifier().flags(
        pa.chunked_array([pa.array([BINGBOT, BINGBOT])]),
        pa.chunked_array([pa.array(["157.55.39.1", "198.51.100.1"])]),
    ).spoofed.tolist() == [False, True]
    moved = tmp_path / "googlebot.json"
    moved.write_text("<html>200 OK, but no ranges here</html>")
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "crawlers", "update", str(moved)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "ECOMWATCH_CRAWLERS_DIR": str(tmp_path / "installed")},
    )  # fmt: skip
    assert ran.returncode == 2 and "not JSON" in ran.stderr
    assert load_lists()["googlebot"].origin == "shipped"


def test_a_shops_own_events_with_a_fake_googlebot_raise_a_spoof_alert() -> None:
    rows = [
        {"event_time": T0 + timedelta(seconds=10 * i), "event_type": "view",
         "product_id": i, "user_session": f"s{ip}", "user_id": 1, "ip": ip,
         "user_agent": GOOGLEBOT, "price": 1.0, "category_id": 1, "source": "s",
         "source_pos": i}
        for ip in ("66.249.66.1", "203.0.113.50") for i in range(30)
    ]  # fmt: skip
    detector = Detector(load_rules())
    detector.process(events_table(rows), None)
    detector.snapshot()  # judges what is left
    by_ip = {(a.entity, a.rule) for a in detector.alerts}
    assert ("203.0.113.50", "spoofed-crawler") in by_ip
    assert ("66.249.66.1", "search-engine-crawler") in by_ip
    assert not {rule for ip, rule in by_ip if ip == "66.249.66.1"} - {"search-engine-crawler"}
