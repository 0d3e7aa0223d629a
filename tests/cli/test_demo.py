"""`ecomwatch demo` (what `make demo` runs) tells both halves: the report, the alerts with one
explained, the numbers with the flagged traffic left out, the score against the labels."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli.test_cli import cli

pytestmark = pytest.mark.integration


def test_the_demo_reports_detects_explains_and_scores(tmp_path):
    result = cli("demo", "--dir", str(tmp_path), "--events", "40000")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    steps = [text.index(f"{n}/5") for n in range(1, 6)]
    assert steps == sorted(steps)
    alerts = int(re.search(r"the security side: ([\d,]+) alerts", text)[1].replace(",", ""))
    written = {json.loads(line)["alert_id"] for line in (tmp_path / "alerts.jsonl").open()}
    assert alerts == len(written) > 0
    assert "the top alert explained" in text and "held" in text
    raw, cleaned = re.search(r"│ events\s+│ ([\d,]+)\s+│ ([\d,]+)", text).groups()
    assert int(cleaned.replace(",", "")) < int(raw.replace(",", ""))
    precision = float(re.search(r"precision (\d\.\d+)", text)[1])
    assert precision >= 0.9
    assert "make live" in text and (tmp_path / "report.html").exists()
    again = cli("demo", "--dir", str(tmp_path), "--events", "40000")  # reuses the sample
    assert again.returncode == 0 and "using the existing sample" in again.stdout
    assert "0 rows read" in again.stdout  # resumed: nothing ingested twice, alerts kept
    assert f"the security side: {alerts:,} alerts" in again.stdout
