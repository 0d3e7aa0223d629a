"""`ecomwatch bench evasive`: detection quality on the evasive scenario over several seeds,
from files and live, each seed's figures beside the WAF rate rule's on the same events and
checked against the targets (`detect/evasive_targets.py`).

Per seed: `simulate --attacks --scenario evasive` (kept for the next run in the working
directory), then the detector over the file in micro-batches of event time (`evaluate`), and,
with `live`, the same file replayed into a real `ecomwatch serve` on loopback at `speed` times
event time (`replay --speed`); once it is all accepted and `settle_s` has passed, the service
is stopped (SIGTERM: it judges what is left and checkpoints) and the alerts file it wrote is
scored as `evaluate --alerts` scores it. A flood's delay is `detected_at` minus the onset in
event time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ecomwatch.benchmarks.child import ecomwatch_command
from ecomwatch.benchmarks.serve_bench import environment, wait_ready
from ecomwatch.cli.alert_outputs import latest_alerts, read_alerts
from ecomwatch.config import Config
from ecomwatch.detect.evaluate import Score, evaluate, read_all, score_alert_rows
from ecomwatch.detect.evasive_targets import misses, ordinary_ips
from ecomwatch.detect.rules import load_rules
from ecomwatch.ingest import open_inputs
from ecomwatch.simulate.attacks import in_chunks, labels_path_for, write_labels
from ecomwatch.simulate.evasive import EvasiveScenario
from ecomwatch.simulate.traffic import TrafficSpec
from ecomwatch.simulate.writers import write_traffic
from ecomwatch.testing_servers import free_port


def run_evasive_bench(
    *,
    seeds: list[int],
    events: int,
    days: float,
    work: Path,
    console: Console,
    rule_files: list[Path] | None = None,
    batch_s: float = 30.0,
    live: bool = False,
    speed: float = 60.0,
    settle_s: float = 20.0,
) -> dict[str, Any]:
    rules = load_rules(rule_files)
    results = []
    for seed in seeds:
        csv = work / f"evasive-{events}-{days:g}d-seed{seed}.csv"
        labels = _scenario(csv, TrafficSpec(events=events, seed=seed, days=days), console)
        sources, errors = open_inputs([csv], Config())
        if errors:
            raise RuntimeError(errors[0])
        table = read_all(sources)
        ordinary = ordinary_ips(table, labels)
        console.print(f"seed {seed}: detecting from the file ({table.num_rows:,} events)")
        started = time.perf_counter()
        ours, waf, _ = evaluate(table, labels, rules, batch_s=batch_s)
        file_s = time.perf_counter() - started
        results.append(_figures(seed, "file", ours, waf, ordinary, file_s))
        if live:
            console.print(f"seed {seed}: replaying into `serve` at {speed:g} times event time")
            started = time.perf_counter()
            rows = _live_alerts(csv, work / f"live-seed{seed}", rule_files, speed, settle_s)
            live_s = time.perf_counter() - started
            ours, waf = score_alert_rows(rows, table, labels)
            results.append(_figures(seed, "live", ours, waf, ordinary, live_s))
        for result in results[-(2 if live else 1) :]:
            verdict = "all targets met" if not result["misses"] else "; ".join(result["misses"])
            console.print(f"  {result['mode']}: precision {result['precision']}, {verdict}")
    return {
        "events": events,
        "days": days,
        "seeds": seeds,
        "live": live,
        "speed": speed if live else None,
        "runs": results,
        "targets_met_in": sum(1 for r in results if not r["misses"]),
        "runs_scored": len(results),
    }


def _scenario(csv: Path, spec: TrafficSpec, console: Console) -> dict[str, Any]:
    """The scenario's labels, simulating it first unless an earlier run left it."""
    labels_file = labels_path_for(csv)
    if not (csv.exists() and labels_file.exists()):
        console.print(f"simulating the evasive scenario, seed {spec.seed} → {csv}")
        table, labels = EvasiveScenario(spec).build()
        write_traffic(in_chunks(table), csv)
        write_labels(labels, labels_file)
    return dict(json.loads(labels_file.read_text()))


def _figures(
    seed: int, mode: str, ours: Score, waf: Score, ordinary: int, seconds: float
) -> dict[str, Any]:
    recall = {k: v["recall"] for k, v in ours.per_kind.items() if "recall" in v}
    quiet = {k: v["flagged"] for k, v in ours.per_kind.items() if "recall" not in v}
    return {
        "seed": seed,
        "mode": mode,
        "seconds": round(seconds, 1),
        "precision": round(ours.precision, 4),
        "recall": recall,
        "flagged_not_attacking": quiet,
        "ordinary_ips": ordinary,
        "flood_delay_s": ours.flood_delay_s,
        "high_alarms_in_flash_sale": ours.high_global_alarms_in_flash_sale,
        "high_alarms_in_marketing_spike": ours.high_global_alarms_in_marketing_spike,
        "waf_precision": round(waf.precision, 4),
        "waf_recall": {k: v["recall"] for k, v in waf.per_kind.items() if "recall" in v},
        "misses": misses(ours, ordinary),
    }


def _live_alerts(
    csv: Path, lake: Path, rule_files: list[Path] | None, speed: float, settle_s: float
) -> list[dict[str, Any]]:
    """The alerts (latest line of each) a real `serve` wrote while the file was replayed."""
    # A fresh lake each run: a kept one holds the last run's checkpoint, and a service that
    # resumed from it would hold its alerts under their cooldowns.
    shutil.rmtree(lake, ignore_errors=True)
    lake.mkdir(parents=True)
    alerts = lake / "alerts.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rules = [arg for path in rule_files or [] for arg in ("--rules", str(path))]
    server = subprocess.Popen(
        ecomwatch_command("serve", "--lake", str(lake / "lake"), "--port", str(port),
                          "--alerts", str(alerts), *rules),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip
    try:
        wait_ready(url, server)
        replay = subprocess.run(
            ecomwatch_command("replay", str(csv), "--to", url, "--speed", str(speed),
                              "--batch", "2000", "--json"),
            capture_output=True, text=True, env=environment(),
        )  # fmt: skip
        if replay.returncode != 0:
            raise RuntimeError(f"replay failed: {replay.stderr[-2000:]}")
        sent = json.loads(replay.stdout.strip().splitlines()[-1])
        if sent.get("rejected"):
            raise RuntimeError(f"the collector rejected {sent['rejected']} events: {sent}")
        time.sleep(settle_s)
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=300)
    if server.returncode not in (0, -15):
        raise RuntimeError(f"serve ended with {server.returncode}: {errors[-2000:]}")
    return latest_alerts(read_alerts(alerts)) if alerts.exists() else []
