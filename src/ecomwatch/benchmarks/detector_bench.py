"""`ecomwatch bench detector`: the detector alone on a file run's batches, stage by stage.

`ecomwatch run --alerts` is CPU-bound on a two-core machine, so what detection adds to it is
the detector's own CPU; measured inside a whole run it is lost in the noise of the other
threads. Here a simulated CSV is decoded as a run decodes it (a `FileSource`, one thread; its
CPU time is the baseline, measured in the same invocation), then its batches are fed to a new
`Detector` as a file run feeds them: the watermark the engine computes, judging every
`[detect] judge_rows` rows, a checkpoint every `[engine] checkpoint_rows`, DuckDB on one thread
(a file run's default on two cores). Each round is a new detector on the same batches; the
figures are the process's CPU seconds (the detector's work all runs on the calling thread) and
the wall time of each stage (`Detector.spent`, correlation included).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console

from ecomwatch.benchmarks.child import python_seconds
from ecomwatch.benchmarks.ingest_bench import simulated_csv
from ecomwatch.benchmarks.workdir import bench_workdir
from ecomwatch.config import Config
from ecomwatch.detect.detector import Detector
from ecomwatch.detect.rules import Rule
from ecomwatch.engine.watermark import Watermark
from ecomwatch.sources.base import Position
from ecomwatch.sources.files import FileSource


def decoded_batches(csv_path: Path) -> tuple[list[pa.Table], float]:
    """The file's accepted events in the batches a run decodes, and the decoding's CPU time."""
    started = time.process_time()
    batches = [
        batch.decoded.events
        for batch in FileSource(csv_path, threads=1).read(Position(0, 1))
        if batch.decoded.events.num_rows
    ]
    return batches, time.process_time() - started


def detector_round(
    batches: list[pa.Table],
    rules: list[Rule],
    config: Config,
    listeners: Sequence[Callable[[list[dict[str, Any]]], None]] = (),
) -> dict[str, Any]:
    """One new detector through every batch, as a file run drives it; CPU seconds and stages.
    `listeners` get the alerts as a run's sinks do."""
    raised: list[int] = []  # the alerts handed to the listeners at each call
    detector = Detector(
        rules,
        judge_rows=config.detect.judge_rows,
        threads=1,
        keep_alerts=False,
        listeners=[*listeners, lambda new: raised.append(len(new))],
    )
    watermark = Watermark(
        lateness_s=config.engine.lateness_s, idle_timeout_s=config.engine.idle_timeout_s
    )
    since_checkpoint = 0
    started = time.process_time()
    for events in batches:
        watermark.observe(events["event_time"])
        detector.process(events, watermark.current())
        since_checkpoint += events.num_rows
        if since_checkpoint >= config.engine.checkpoint_rows:
            detector.snapshot()
            since_checkpoint = 0
    detector.snapshot()  # the end of input
    cpu_s = time.process_time() - started
    stages = {name: round(seconds, 3) for name, seconds in sorted(detector.spent.items())}
    return {"cpu_s": round(cpu_s, 3), "alerts": sum(raised), "stages_s": stages}


def run_detector_bench(
    *,
    events: int,
    rounds: int,
    seed: int,
    rules: list[Rule],
    config: Config,
    workdir: Path | None,
    console: Console,
) -> dict[str, Any]:
    with bench_workdir(workdir, "ecomwatch-bench-detector-") as base:
        csv_path = simulated_csv(base, events, seed, console)
        console.print("decoding the file (the baseline)")
        batches, decode_s = decoded_batches(csv_path)
    rows = sum(batch.num_rows for batch in batches)
    results = []
    for number in range(rounds):
        console.print(f"round {number + 1} of {rounds}: the detector on {rows:,} events")
        results.append(detector_round(batches, rules, config))
    best = min(results, key=lambda r: r["cpu_s"])
    return {
        "events": rows,
        "batches": len(batches),
        "rules": len(rules),
        "decode_cpu_s": round(decode_s, 3),
        "detector_cpu_s": [r["cpu_s"] for r in results],
        "ratio_to_decode": round(best["cpu_s"] / decode_s, 3) if decode_s else None,
        "alerts": best["alerts"],
        "stages_s": best["stages_s"],
        "python_sum_range_1e8_s": python_seconds(),
    }
