"""`ecomwatch evaluate-logs`: the figures of a log add up, and masking bots' user agents takes
the declared-bot rule away while the behaviour rules still see what the bots do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecomwatch.config import Config
from ecomwatch.detect.evaluate_logs import evaluate_log
from ecomwatch.detect.rules import load_rules

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"
SCAN = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "accesslogs"
    / "scan_attack_2024__AgungBahtiarr_webserver_attack_clasification_access.log"
)  # fmt: skip


def test_the_fixture_log_scores_every_attacker_and_nothing_else() -> None:
    score = evaluate_log(EXAMPLES / "web-attacks.log", load_rules(), Config()).to_json()
    assert score["requests"] == 632 and score["rejected"] == 0 and score["ips"] == 16
    # Self-declared: the scanner's zgrab, the prober's python-requests, Googlebot and a fake.
    assert score["bot_ips"] == 4 and score["search_engine_ips"] == 2
    assert score["flagged_ips"] == 13  # one attacker per web rule
    assert score["flagged_by_rule"]["spoofed-crawler"] == 1
    assert score["flagged_by_rule"]["vulnerability-scanner"] == 1
    # Masked, the scanner and the prober are still caught by what they request; the two
    # "Googlebots", reading 25 and 30 product pages, are not.
    assert score["masked_bots_flagged"] == 2
    assert score["masked_other_bots_flagged_share"] == 1.0


@pytest.mark.skipif(not SCAN.is_file(), reason="../shared/data/accesslogs is not on this machine")
def test_evaluate_logs_on_a_real_scan_log_prints_json_per_file() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", "evaluate-logs", str(SCAN), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    score = json.loads(ran.stdout)
    lines = [line for line in SCAN.read_text(errors="replace").splitlines() if line.strip()]
    assert score["requests"] + score["rejected"] == len(lines)
    assert score["ips"] == len({line.split(" ", 1)[0] for line in lines})
    assert 0 < score["bot_ip_share"] < 1
    assert score["flagged_by_rule"].get("vulnerability-scanner", 0) >= 1
    assert score["masked_bots_flagged"] <= score["bot_ips"]
