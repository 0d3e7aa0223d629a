"""`ecomwatch bench store`: the alert state stores side by side, and what a DynamoDB store
costs a detection run.

1. `alerts` synthetic alerts over a tenth as many IPs, a fifth of them escalated later (a second
   version of the same alert_id at a higher severity), in detection order, are added in
   batches of 1,000 to a new SQLite file (the baseline) and to a new DynamoDB table on the
   server; then once more (a replay: every write is "already done").
2. Detection on a simulated shop under attack without a store (the baseline) and with a
   DynamoDB store written while it runs (StoreWriter, as `detect --store` does): the pipeline's
   time with the store (writes are off the hot path) and how long after the last event the
   store had caught up.

The server is moto's (a dev dependency) or dynalite (from services/, `make services`), started
here unless `endpoint` names another. Both are emulators: their per-call cost is not the real
service's (a few milliseconds a write within a region).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from ecomwatch.benchmarks.child import ecomwatch_command
from ecomwatch.config import Config
from ecomwatch.detect.rules import load_rules
from ecomwatch.detect.run import detect
from ecomwatch.ingest import open_inputs
from ecomwatch.process_memory import children_cpu_s, cpu_s
from ecomwatch.sinks.alert_store import AlertStore
from ecomwatch.sinks.dynamodb_store import DynamoAlertStore
from ecomwatch.sinks.store_writer import StoreWriter
from ecomwatch.sinks.stores import journal_file, open_store
from ecomwatch.testing_servers import dynalite, moto_server

SERVERS = ("moto", "dynalite")
BATCH = 1_000
JUDGE_ROWS = 20_000
START = datetime(2019, 11, 1, tzinfo=UTC)


def synthetic_alerts(count: int) -> list[dict[str, Any]]:
    """`count` alert lines: a fifth of them escalations of an earlier alert."""
    alerts: list[dict[str, Any]] = []
    originals = count - count // 5
    for n in range(originals):
        moment = START + timedelta(seconds=n)
        stamp = moment.isoformat().replace("+00:00", "Z")
        alerts.append(
            {
                "alert_id": f"{n:016x}", "rule": ("fast-scraper", "flood", "cart-abuse")[n % 3],
                "severity": "medium" if n % 2 else "high", "entity_type": "ip",
                "entity": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256 // 10}",
                "first_seen": stamp, "last_seen": stamp, "detected_at": stamp, "count": 10,
                "evidence": {"views": 100 + n % 50, "distinct_products": 60},
                "explanation": "a synthetic alert", "labels": ["bench"],
            }
        )  # fmt: skip
    for n in range(count - originals):
        earlier = alerts[n * 4]
        moment = START + timedelta(seconds=originals + n)
        stamp = moment.isoformat().replace("+00:00", "Z")
        alerts.append(
            {**earlier, "severity": "critical", "count": 50, "last_seen": stamp,
             "detected_at": stamp}
        )  # fmt: skip
    alerts.sort(key=lambda a: a["detected_at"])
    return alerts


def _timed_adds(store: Any, alerts: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for offset in range(0, len(alerts), BATCH):
        store.add(alerts[offset : offset + BATCH])
    return time.perf_counter() - started


@contextmanager
def _server(name: str, endpoint: str | None) -> Iterator[str]:
    if endpoint:
        yield endpoint
        return
    # At the lowest CPU priority: the pipeline's time then shows the client's cost, not an
    # emulator's sharing the two cores (on AWS the server is elsewhere).
    with moto_server(background=True) if name == "moto" else dynalite(background=True) as url:
        yield url


def run_store_bench(
    *, alerts: int, events: int, server: str, endpoint: str | None, console: Console
) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="ecomwatch-bench-store-"))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_REGION", "us-east-1"),
    }
    try:
        with _server(server, endpoint) as url:
            env["AWS_ENDPOINT_URL"] = url
            os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")})
            os.environ.setdefault("AWS_ACCESS_KEY_ID", env["AWS_ACCESS_KEY_ID"])
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", env["AWS_SECRET_ACCESS_KEY"])
            figures = _stores(synthetic_alerts(alerts), base, console)
            figures.update(_detect_runs(events, base, env, console))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"bench": "store", "alerts": alerts, "server": server, **figures}


def _stores(alerts: list[dict[str, Any]], base: Path, console: Console) -> dict[str, Any]:
    console.print(f"{len(alerts):,} alerts in batches of {BATCH:,}: SQLite, then DynamoDB")
    sqlite = AlertStore(base / "alerts.db")
    sqlite_s = _timed_adds(sqlite, alerts)
    sqlite_replay_s = _timed_adds(sqlite, alerts)
    stored = len(sqlite.all_alerts())
    sqlite.close()
    dynamo = DynamoAlertStore("ecomwatch-bench", failures=base / "failures.jsonl")
    dynamo_s = _timed_adds(dynamo, alerts)
    dynamo_replay_s = _timed_adds(dynamo, alerts)
    if len(dynamo.all_alerts()) != stored or dynamo.failed:
        raise RuntimeError(
            f"DynamoDB kept {len(dynamo.all_alerts())} of {stored} alerts, "
            f"{dynamo.failed} write(s) failed: {dynamo.unreachable}"
        )
    return {
        "distinct_alerts": stored,
        "sqlite_s": round(sqlite_s, 2),
        "sqlite_alerts_per_s": round(len(alerts) / sqlite_s),
        "sqlite_replay_s": round(sqlite_replay_s, 2),
        "dynamodb_s": round(dynamo_s, 2),
        "dynamodb_alerts_per_s": round(len(alerts) / dynamo_s),
        "dynamodb_replay_s": round(dynamo_replay_s, 2),
        "dynamodb_to_sqlite_throughput": round(sqlite_s / dynamo_s, 4),
    }


def _detect_runs(events: int, base: Path, env: dict[str, str], console: Console) -> dict[str, Any]:
    """Detection on a simulated shop under attack, judged every `JUDGE_ROWS` rows (so that
    alerts come all along the run, as they do from a stream), without a store and with the
    DynamoDB one written beside it: the pipeline's time, and how long the store took to catch
    up after the last event. Each twice, alternating; the faster of each counts."""
    data = base / "attacks.csv"
    subprocess.run(
        ecomwatch_command("simulate", "--events", str(events),
         "--attacks", "--seed", "3", "--out", str(data)),
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    settings = Config.model_validate({"detect": {"judge_rows": JUDGE_ROWS}})
    rules = load_rules()

    def once(listeners: list[Any], writer: StoreWriter | None = None) -> dict[str, float]:
        sources, errors = open_inputs([data], settings)
        started, cpu, server_cpu = time.perf_counter(), cpu_s(), children_cpu_s()
        _, raised = detect(
            sources, rules, config=settings, open_errors=errors, alert_listeners=listeners
        )
        seconds = time.perf_counter() - started
        if writer is not None:
            writer.close()
        return {
            "s": seconds, "alerts": len(raised), "cpu_s": cpu_s() - cpu,
            "server_cpu_s": children_cpu_s() - server_cpu,
        }  # fmt: skip

    without, with_store, drains = [], [], []
    written = 0
    for round_ in range(2):
        console.print(f"detect {events:,} simulated events without a store (round {round_ + 1})")
        without.append(once([]))
        console.print(f"detect {events:,} simulated events with dynamodb://run-{round_}")
        spec = f"dynamodb://run-{round_}"
        writer = StoreWriter(
            open_store(spec, beside=base / "alerts.jsonl"), journal_file(spec, base / "a.jsonl")
        )
        with_store.append(once([writer.send], writer))
        drains.append(writer.drain_s)
        written = writer.written
    plain = min(without, key=lambda r: r["s"])
    stored = min(with_store, key=lambda r: r["s"])
    return {
        "detect_events": events,
        "detect_alert_lines": int(plain["alerts"]),
        "detect_s": round(plain["s"], 2),
        "detect_with_dynamodb_store_s": round(stored["s"], 2),
        "dynamodb_store_overhead": round(stored["s"] / plain["s"] - 1, 4),
        "store_caught_up_after_s": round(min(drains), 2),
        "store_alert_lines_written": written,
        # Where the time went: this process's CPU (pipeline + store client) and the
        # emulator's, which shares the two cores here and would not on AWS.
        "detect_cpu_s": round(plain["cpu_s"], 2),
        "detect_with_store_cpu_s": round(stored["cpu_s"], 2),
        "store_client_cpu_ms_per_alert": round(
            (stored["cpu_s"] - plain["cpu_s"]) * 1000 / max(written, 1), 2
        ),
        "emulator_cpu_s": round(stored["server_cpu_s"], 2),
    }
