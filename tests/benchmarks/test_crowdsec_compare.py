"""CrowdSec beside ecomwatch on the same log: Debian's CrowdSec replayed offline (`make
crowdsec` unpacks it; the test command does), and the comparison's arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecomwatch.benchmarks.crowdsec_compare import DEFAULT_ROOT, compare, crowdsec_score

ROOT = Path(__file__).resolve().parents[2]
CROWDSEC = ROOT / DEFAULT_ROOT
LOG = ROOT / "examples" / "rules" / "web-attacks.log"


def test_the_comparison_counts_each_side() -> None:
    figures = compare(
        ours={"a", "b", "c"},
        theirs={"b": {"crowdsecurity/http-probing"}, "d": {"crowdsecurity/http-probing",
                "crowdsecurity/http-bad-user-agent"}},
        bots={"d", "e"},
        masked_theirs={"e"},
    )  # fmt: skip
    assert (figures["flagged_ips"], figures["both"]) == (2, 1)
    assert (figures["only_ecomwatch"], figures["only_crowdsec"]) == (2, 1)
    assert figures["by_scenario"] == {"crowdsecurity/http-bad-user-agent": 1,
                                      "crowdsecurity/http-probing": 2}  # fmt: skip
    assert figures["masked_bots_flagged"] == 1 and figures["masked_bots_flagged_share"] == 0.5


@pytest.mark.integration
@pytest.mark.skipif(not (CROWDSEC / "usr/bin/crowdsec").is_file(), reason="run `make crowdsec`")
def test_crowdsec_replays_the_fixture_log_offline() -> None:
    prober, scanner = "198.51.100.10", "198.51.100.15"
    lines = {n for n, line in enumerate(LOG.read_text().splitlines(), 1) if "zgrab" in line}
    figures = crowdsec_score(LOG, {prober, scanner}, {scanner}, lines, CROWDSEC)
    # CrowdSec's scenarios see the prober's sensitive files and the scanner's 404s.
    assert figures["both"] == 2 and figures["only_ecomwatch"] == 0
    assert "crowdsecurity/http-sensitive-files" in figures["by_scenario"]
    # Its zgrab user agent masked, the scanner is still caught by its probing.
    assert figures["masked_bots_flagged"] == 1
