"""`ecomwatch bench flink`: the same detection rules on the same file, embedded vs Flink.

One run measures, on one simulated attack scenario: the embedded detector (`ecomwatch detect`
in this process, the rules that compile for Flink only); the compiled Flink job on a local
mini-cluster at parallelism 1 and 2; a pass-through Flink job (source → view → blackhole, no
rules: Flink's own floor for reading and parsing the file); and Flink's startup (the
pass-through job over the header alone). Figures: wall seconds and events/s of each, events/s
per parallel slot, the ratios to the embedded engine, and this machine's Python speed. (CPU
time is not reported: the JVM and its Python workers are not this process's children, so
`getrusage` does not see them.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ecomwatch.benchmarks.child import python_seconds
from ecomwatch.config import Config
from ecomwatch.detect.rules import Rule
from ecomwatch.flink.compiler import EVENTS_VIEW, compile_rules
from ecomwatch.flink.connectors import Endpoint
from ecomwatch.flink.job_dir import view_sql, write_job
from ecomwatch.flink.runner import run_job
from ecomwatch.simulate.attacks import AttackScenario, in_chunks
from ecomwatch.simulate.traffic import TrafficSpec
from ecomwatch.simulate.writers import write_traffic


def _measured(run: Callable[[], int], events: int, *, slots: int = 1) -> dict[str, Any]:
    started = time.perf_counter()
    alerts = run()
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 1),
        "events_per_s": round(events / seconds),
        "events_per_s_per_slot": round(events / seconds / slots),
        "alerts": alerts,
    }


def _embedded(path: Path, rules: list[Rule]) -> int:
    from ecomwatch.detect.run import detect
    from ecomwatch.sources.files import file_sources

    sources, _ = file_sources([path])
    _, alerts = detect(sources, rules, config=Config())
    return len(alerts)


def _flink(
    work: Path, name: str, path: Path, rules: list[Rule], *, passthrough: bool = False
) -> Path:
    """A job directory; `passthrough`: no rules, the parsed events into a blackhole."""
    job = work / name
    write_job(
        job,
        rules,
        source=Endpoint.parse(f"files:{path}", sink=False),
        sink=Endpoint.parse(f"files:{work / (name + '-out')}", sink=True),
        lateness_s=Config().engine.lateness_s,
    )
    if passthrough:
        spec = json.loads((job / "job.json").read_text())
        spec.update(
            passthrough=f"INSERT INTO alerts SELECT event_type FROM {EVENTS_VIEW}",
            sink="blackhole",
            rules=[],
            udfs=[],
            popularity=None,
            sink_ddl="CREATE TABLE alerts (line STRING) WITH ('connector' = 'blackhole')",
        )
        # No UDFs: the source, parsed, as the rules read it.
        spec["view_sql"] = view_sql([])
        (job / "job.json").write_text(json.dumps(spec))
    return job


def run_flink_bench(*, events: int, seed: int, rules: list[Rule], work: Path) -> dict[str, Any]:
    path = work / "events.csv"
    days = max(0.05, events / 2_000_000)
    table, _ = AttackScenario(TrafficSpec(events=events, seed=seed, days=days)).build()
    rows = write_traffic(in_chunks(table), path)
    header = work / "header.csv"
    header.write_text(path.open().readline())
    compiled = [item.rule for item in compile_rules(rules)[0]]

    def on_flink(job: Path, parallelism: int) -> Callable[[], int]:
        return lambda: len(run_job(job, parallelism=parallelism).alerts)

    figures: dict[str, Any] = {"events": rows, "rules": len(compiled)}
    figures["embedded"] = _measured(lambda: _embedded(path, compiled), rows)
    for parallelism in (1, 2):
        job = _flink(work, f"p{parallelism}", path, compiled)
        figures[f"flink_p{parallelism}"] = _measured(
            on_flink(job, parallelism), rows, slots=parallelism
        )
    floor = _flink(work, "passthrough", path, compiled, passthrough=True)
    figures["flink_passthrough"] = _measured(on_flink(floor, 1), rows)
    startup = _flink(work, "startup", header, compiled, passthrough=True)
    figures["flink_startup_s"] = _measured(on_flink(startup, 1), 1)["seconds"]
    embedded_s = figures["embedded"]["seconds"]
    figures["ratios"] = {
        f"{name}_s_vs_embedded": round(figures[name]["seconds"] / embedded_s, 2)
        for name in ("flink_p1", "flink_p2", "flink_passthrough")
    }
    figures["python_sum_range_1e8_s"] = round(python_seconds(), 2)
    return figures
