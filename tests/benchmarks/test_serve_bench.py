"""`ecomwatch bench serve` end to end, briefly: the baseline, the load, the injected scrapers,
the stop."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from ecomwatch.benchmarks.serve_bench import _mb_per_minute, _median_by_minute, run_serve_bench


def test_memory_slope_is_megabytes_per_minute() -> None:
    rising = [(float(t), 500.0 + 2.0 * t) for t in range(60, 120)]  # 2 MB a second
    assert _mb_per_minute(rising) == pytest.approx(120.0)
    swinging = [(float(t), 600.0 if t % 10 < 5 else 900.0) for t in range(60, 300)]
    assert abs(_mb_per_minute(swinging) or 0.0) < 5
    assert _mb_per_minute([(1.0, 5.0)]) is None


def test_memory_by_minute_is_each_minutes_median() -> None:
    samples = [(0.0, 100.0), (30.0, 300.0), (59.0, 200.0), (61.0, 900.0), (125.0, 50.0)]
    assert _median_by_minute(samples) == [200.0, 900.0, 50.0]


def test_a_short_load_test_reports_every_figure(tmp_path: Path) -> None:
    figures = run_serve_bench(
        seconds=12,
        events=10_000,
        connections=2,
        workdir=tmp_path,
        console=Console(quiet=True),
        rate=5_000,
        baseline_seconds=5,
    )
    assert 0 < figures["events_accepted"] <= 12 * 5_000 * 1.05
    assert figures["baseline_events_per_s"] > 0
    assert figures["ratio_to_baseline"] == pytest.approx(
        figures["events_per_s"] / figures["baseline_events_per_s"], abs=0.001
    )
    # Scrapers are posted from the sixth second on, one a second, each awaited.
    assert figures["attacks_injected"] >= 1
    assert figures["attacks_alerted"] == figures["attacks_injected"]
    assert figures["event_to_alert_p99_s"] > 0
    assert len(figures["serve_rss_mb_median_by_minute"]) == 1  # a 12-s run: its first minute
    # Each scraper opens an incident; the dashboard's message holds one page of them.
    assert figures["incidents_at_end"] >= figures["attacks_alerted"] >= 1
    assert 1_000 < figures["dashboard_message_bytes_max"] < 200_000
    assert figures["clean_stop"]
    committed = int(figures["stop_message"].split()[1].replace(",", ""))
    assert committed >= figures["events_accepted"]  # replayed events + the injected scrapers


def test_replay_for_a_time_starts_its_clock_once_the_files_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from ecomwatch.benchmarks.serve_bench import running_null_collector
    from ecomwatch.serve import replay as replay_module
    from ecomwatch.simulate.traffic import TrafficSpec, generate
    from ecomwatch.simulate.writers import write_traffic

    traffic = tmp_path / "t.csv"
    write_traffic(generate(TrafficSpec(events=5_000, seed=2)), traffic)
    real_blocks = replay_module.event_blocks

    def slow_blocks(paths: list[Path], config=None):  # a big file: reading it takes a while
        time.sleep(1.5)
        yield from real_blocks(paths, config)

    monkeypatch.setattr(replay_module, "event_blocks", slow_blocks)
    with running_null_collector() as url:
        stats = replay_module.replay([traffic], url, rate=2_000, repeat_for_s=1.0)
    assert stats.seconds < 1.4  # the 1.5 s of reading is not counted
    assert 1_000 <= stats.accepted <= 2_600  # paced at 2,000/s from the start, no catching up
