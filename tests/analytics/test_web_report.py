"""The report's web section: on a lake of web requests its figures add up, and a lake of a
shop's own events has none."""

from __future__ import annotations

from pathlib import Path

from ecomwatch.analytics.report import lake_report
from ecomwatch.config import Config
from ecomwatch.ingest import ingest
from ecomwatch.lake.open import open_lake
from ecomwatch.testing import rees46_csv

LOG = Path(__file__).resolve().parents[2] / "examples" / "rules" / "web-attacks.log"


def _report(inputs: list[Path], lake: Path) -> dict:  # type: ignore[type-arg]
    ingest(inputs, lake, config=Config())
    return lake_report(open_lake(str(lake)))


def test_a_web_log_gets_its_section_and_the_figures_add_up(tmp_path: Path) -> None:
    report = _report([LOG], tmp_path / "lake")
    web = report["web"]
    lines = LOG.read_text().splitlines()
    assert web["requests"] == len(lines) == report["totals"]["events"]
    assert sum(web["status"].values()) == sum(web["request_kinds"].values()) == len(lines)
    assert web["status"]["4xx"] == sum(1 for line in lines if '" 4' in line)
    # zgrab, python-requests, Googlebot and the fake Googlebot said what they are.
    assert web["bots"]["ips"] == 4 and 0 < web["bots"]["request_share"] < 1
    failing = [row["path"] for row in web["top_4xx_paths"]]
    assert "/.env" in failing and "/product/item-1/" not in failing
    top = web["top_paths"][0]
    assert top["requests"] >= web["top_paths"][-1]["requests"]


def test_a_shops_own_events_have_no_web_section(tmp_path: Path) -> None:
    csv = tmp_path / "shop.csv"
    csv.write_text(rees46_csv([
        {"event_time": "2019-11-01 00:00:00 UTC", "event_type": "view", "product_id": 1,
         "category_id": 2, "price": 1.5, "user_id": 3, "user_session": "s"},
    ]))  # fmt: skip
    assert "web" not in _report([csv], tmp_path / "lake")
