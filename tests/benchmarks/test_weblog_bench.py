"""`ecomwatch bench weblog`, briefly: the simulated log decodes whole, and the figures are
the ones measured."""

from __future__ import annotations

from pathlib import Path

from ecomwatch.benchmarks.weblog_bench import run_weblog_bench


def test_the_simulated_log_decodes_into_one_event_a_line(tmp_path: Path) -> None:
    figures = run_weblog_bench(tmp_path, lines=12_000, repeat=2)
    assert figures["lines"] == figures["events"] == 12_000 and figures["rejected"] == 0
    assert figures["decode_to_no_parse"] > 0 and figures["decode_lines_per_s"] > 0
    kinds = figures["request_kinds"]
    assert kinds["page"] > kinds["static"] > 0 and sum(kinds.values()) == 12_000
    # The bench's URL map turns its shop paths into commerce events (one in five is an asset).
    types = figures["mapped_event_types"]
    assert types["request"] == kinds["static"] and types["view"] > types["cart"] > 0
    assert sum(types.values()) == 12_000
    assert figures["run_s"] > 0 and figures["run_with_detection_s"] > 0
    # Each figure is the fastest of its runs.
    runs = figures["seconds_of_each_run"]
    assert all(len(seconds) == 2 for seconds in runs.values())
    assert figures["decode_s"] == min(runs["decode"]) and figures["duckdb_read_s"] > 0
    assert len(figures["detection_overhead_per_pair"]) == 2
