"""Parity between the engines: the embedded detector judged at the Flink job's steps, and the
comparison of two alert sets.

The embedded detector judges each rule every 1/60 of its window over the events seen so far, so
which window prefixes it judges depends on where batches end. Fed batches that end on the Flink
job's step boundaries (epoch-aligned, one detector per step length), it judges exactly the
prefixes the job's CUMULATE windows emit, and the two must raise the same alerts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.detect.detector import Detector
from ecomwatch.detect.evaluate import micro_batches
from ecomwatch.detect.rules import Rule
from ecomwatch.flink.compiler import step_ms


def embedded_alerts(
    events: pa.Table, rules: list[Rule], *, lateness_s: float
) -> list[dict[str, Any]]:
    """The embedded detector's alerts (JSON lines) when judged at the Flink job's steps."""
    by_step: dict[int, list[Rule]] = defaultdict(list)
    for rule in rules:
        by_step[step_ms(rule) // 1000].append(rule)
    alerts: list[dict[str, Any]] = []
    for step_s, group in sorted(by_step.items()):
        detector = Detector(group)
        for batch in micro_batches(events, step_s, aligned=True):
            latest = int(pc.max(batch["event_time"]).cast(pa.int64()).as_py())
            detector.process(batch, latest - int(lateness_s * 1e6))
        detector.snapshot()  # the end of input judges what is left
        alerts.extend(alert.to_json() for alert in detector.alerts)
    return alerts


# What makes two alerts the same alert on both engines (evidence and times of detection differ
# by design: the embedded engine may judge later prefixes in one round).
IDENTITY = ("alert_id", "rule", "entity_type", "entity", "window_start", "severity")


def identities(alerts: Iterable[dict[str, Any]]) -> set[tuple[str, ...]]:
    return {tuple(str(alert[field]) for field in IDENTITY) for alert in alerts}


@dataclass(frozen=True)
class Parity:
    both: int
    only_embedded: list[tuple[str, ...]]
    only_flink: list[tuple[str, ...]]

    @property
    def equal(self) -> bool:
        return not self.only_embedded and not self.only_flink

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": self.both,
            "only_embedded": [dict(zip(IDENTITY, row, strict=True)) for row in self.only_embedded],
            "only_flink": [dict(zip(IDENTITY, row, strict=True)) for row in self.only_flink],
        }


def compare(embedded: Iterable[dict[str, Any]], flink: Iterable[dict[str, Any]]) -> Parity:
    ours, theirs = identities(embedded), identities(flink)
    return Parity(
        both=len(ours & theirs),
        only_embedded=sorted(ours - theirs),
        only_flink=sorted(theirs - ours),
    )
