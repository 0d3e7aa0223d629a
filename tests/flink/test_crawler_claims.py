"""The Flink job's crawler-claim UDF (`crawler_claims`) judges as the embedded detector's
batch verifier (`CrawlerVerifier`) does, request by request."""

from __future__ import annotations

import pyarrow as pa

from ecomwatch.detect.crawler_claims import CLAIMED, NO_CLAIM, SPOOFED, VERIFIED, ClaimJudge
from ecomwatch.detect.crawlers import CrawlerVerifier
from ecomwatch.flink.job_dir import crawler_ranges

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
APPLEBOT = "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Applebot/0.1"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/119.0"

REQUESTS = [
    (GOOGLEBOT, "66.249.66.1"),  # in Google's list
    (GOOGLEBOT, "66.249.95.250"),  # Google's own /19, outside the list: no verdict
    (GOOGLEBOT, "203.0.113.9"),  # a spoof
    (GOOGLEBOT, "2001:4860:4801:10::1"),  # in the list, IPv6
    (GOOGLEBOT, "2a00:1450::1"),  # outside it, IPv6
    (GOOGLEBOT, "not an address"),
    (GOOGLEBOT, None),
    (BINGBOT, "40.77.167.1"),  # no Bing list shipped: claimed, no verdict
    (APPLEBOT, "17.241.208.161"),
    (APPLEBOT, "17.1.2.3"),  # Apple's own /8, outside the list
    (APPLEBOT, "198.51.100.7"),
    (BROWSER, "66.249.66.1"),
    (None, "66.249.66.1"),
]


def test_each_request_is_judged_as_the_embedded_verifier_judges_it():
    judge = ClaimJudge(**crawler_ranges())
    flags = CrawlerVerifier().flags(
        pa.chunked_array([pa.array([a for a, _ in REQUESTS], pa.string())]),
        pa.chunked_array([pa.array([ip for _, ip in REQUESTS], pa.string())]),
    )
    expected = [
        VERIFIED if verified else SPOOFED if spoofed else CLAIMED if claimed else NO_CLAIM
        for claimed, verified, spoofed in zip(
            flags.claimed, flags.verified, flags.spoofed, strict=True
        )
    ]
    assert [judge.classify(agent, ip) for agent, ip in REQUESTS] == expected
    # The cases above are not all one kind: each verdict occurs.
    assert set(expected) == {NO_CLAIM, CLAIMED, VERIFIED, SPOOFED}
