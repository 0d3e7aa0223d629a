"""`ecomwatch bench incidents`: what correlating alerts into incidents costs, and how well it
groups them, on a labelled attack scenario.

The scenario is fed to a `Detector` in micro-batches of event time, as a live service sees it.
The detector times its correlation work (assigning each alert, resolving quiet incidents,
summarizing changed ones); the overhead is that time over the rest of detection in the same
run, and the grouping is scored against the scenario's campaigns, with the webhook messages
an `IncidentNotifier` would send about each.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.detect.detector import Detector
from ecomwatch.detect.evaluate import micro_batches
from ecomwatch.detect.incident_log import latest_records
from ecomwatch.detect.incident_scores import score_incidents
from ecomwatch.detect.rules import Rule
from ecomwatch.simulate.attacks import AttackScenario
from ecomwatch.simulate.traffic import TrafficSpec
from ecomwatch.simulate.writers import as_typed_table
from ecomwatch.sinks.incident_notifier import IncidentNotifier


def run_incidents_bench(
    *, events: int, days: float, batch_s: float, rules: list[Rule], seed: int = 11
) -> dict[str, Any]:
    raw, labels = AttackScenario(TrafficSpec(events=events, seed=seed, days=days)).build()
    traffic = as_typed_table(raw)
    records: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []  # what a webhook would get, per incident
    notifier = IncidentNotifier(messages.extend)
    detector = Detector(rules, incident_listeners=[records.extend, notifier.records])
    started = time.perf_counter()
    for batch in micro_batches(traffic, batch_s):
        latest = int(pc.max(batch["event_time"]).cast(pa.int64()).as_py())
        detector.process(batch, latest - 5_000_000)
    detector.snapshot()  # judges what is left, as the end of input does
    notifier.close()
    detect_s = time.perf_counter() - started
    alerts = [a.to_json() for a in detector.alerts]
    current = [r for r in latest_records(records).values() if r["state"] != "merged"]
    rest_s = detect_s - detector.correlating_s
    return {
        "events": traffic.num_rows,
        "batch_seconds": batch_s,
        "alerts": len(alerts),
        "incidents": len(current),
        "incident_records_written": len(records),
        "detect_s": round(detect_s, 2),
        "correlate_s": round(detector.correlating_s, 3),
        "correlation_overhead": round(detector.correlating_s / rest_s, 4) if rest_s else None,
        "webhook_messages": notifier.sent,
        "grouping": score_incidents(alerts, records, labels, messages).as_dict(),
    }
