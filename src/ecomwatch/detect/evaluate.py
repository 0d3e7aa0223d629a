"""Score detection against a labelled scenario, beside an AWS-WAF-style rate rule.

The scenario's events are fed to the detector in micro-batches of a few seconds of event time,
as a live service would see them, so detection delays are measured, not assumed. An IP counts
as flagged when an alert of severity medium or above names it (as its entity, a member of a
flagged group, or an IP behind a flagged session or user). The baseline is the rule a shop gets
from a WAF: an IP is blocked once it sends more than `limit` requests in a fixed 5-minute window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.detect.alert import Alert, parse_iso_us
from ecomwatch.detect.detector import Detector
from ecomwatch.detect.incident_scores import IncidentScore, score_incidents
from ecomwatch.detect.rules import Rule, Severity, is_flagging
from ecomwatch.sources.base import Position, Source

WAF_WINDOW_S = 300


def read_all(sources: Sequence[Source]) -> pa.Table:
    """Every accepted event of the sources, in one table (scenarios are small)."""
    tables = [
        batch.decoded.events
        for source in sources
        for batch in source.read(Position())
        if batch.decoded.events.num_rows
    ]
    return pa.concat_tables(tables)


def micro_batches(events: pa.Table, batch_s: float, *, aligned: bool = False) -> Iterator[pa.Table]:
    """Slices of `batch_s` seconds of event time, in order (events sorted by time first):
    from the first event on, or with `aligned`, cut at every epoch multiple of `batch_s`."""
    ordered = events.sort_by([("event_time", "ascending")])
    times = ordered["event_time"].cast(pa.int64()).to_numpy()
    if not len(times):
        return
    step_us = int(batch_s * 1e6)
    first = times[0] - times[0] % step_us if aligned else times[0]
    edges = np.arange(first, times[-1] + 1, step_us)
    cuts = np.searchsorted(times, edges[1:], side="left")
    begin = 0
    for cut in [*cuts.tolist(), len(times)]:
        if cut > begin:
            yield ordered.slice(begin, cut - begin)
            begin = cut


def run_detector(
    events: pa.Table, rules: list[Rule], *, batch_s: float = 5.0, lateness_s: float = 5.0
) -> tuple[list[Alert], list[dict[str, Any]]]:
    """The alerts, and every incident record written while they were raised (a log)."""
    records: list[dict[str, Any]] = []
    detector = Detector(rules, incident_listeners=[records.extend])
    for batch in micro_batches(events, batch_s):
        latest = int(pc.max(batch["event_time"]).cast(pa.int64()).as_py())
        detector.process(batch, latest - int(lateness_s * 1e6))
    return detector.alerts, records


def waf_flags(events: pa.Table, limit: int) -> dict[str, int]:
    """IP → the event time (µs) at which a WAF rate rule would block it."""
    con = duckdb.connect()
    con.register("events", events.select(["event_time", "ip"]))
    rows = con.execute(
        f"""
        WITH numbered AS (
            SELECT ip, epoch_us(event_time) AS t,
                   row_number() OVER (
                       PARTITION BY ip, fdiv(epoch(event_time), {WAF_WINDOW_S})
                       ORDER BY event_time) AS n
            FROM events WHERE ip IS NOT NULL)
        SELECT ip, min(t) FROM numbered WHERE n > ? GROUP BY ip""",
        [limit],
    ).fetchall()
    return {ip: t for ip, t in rows}


def detector_flags(alerts: list[Alert]) -> dict[str, int]:
    """IP → the time (µs, event time) it was first named by an alert of medium or above."""
    flagged: dict[str, int] = {}
    for alert in alerts:
        if not is_flagging(alert.severity):
            continue
        when = int(alert.detected_at.timestamp() * 1e6)
        for ip in alert.ips:
            flagged[ip] = min(flagged.get(ip, when), when)
    return flagged


@dataclass
class Score:
    """One detector's results on a scenario."""

    name: str
    per_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    precision: float = 0.0
    flagged: int = 0
    false_positives: int = 0
    flood_delay_s: float | None = None
    high_global_alarms_in_flash_sale: int = 0
    high_global_alarms_in_marketing_spike: int | None = None  # scenarios with one
    incidents: IncidentScore | None = None  # how alerts were grouped (scenarios with campaigns)

    def to_json(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents.as_dict() if self.incidents else None,
            "name": self.name,
            "precision": round(self.precision, 4),
            "flagged": self.flagged,
            "false_positives": self.false_positives,
            "flood_delay_s": self.flood_delay_s,
            "high_global_alarms_in_flash_sale": self.high_global_alarms_in_flash_sale,
            "high_global_alarms_in_marketing_spike": self.high_global_alarms_in_marketing_spike,
            "per_kind": self.per_kind,
        }


def score(
    name: str, flagged: dict[str, int], labels: dict[str, Any], global_alerts: Sequence[Alert] = ()
) -> Score:
    kinds: dict[str, str] = labels["ips"]
    attack_kinds = labels["kinds"]["attack"]
    result = Score(name=name, flagged=len(flagged))
    every_kind = [*attack_kinds, *labels["kinds"]["legitimate"], "normal"]
    for kind in every_kind:
        members = {ip for ip, k in kinds.items() if k == kind}
        hits = [ip for ip in flagged if kinds.get(ip, "normal") == kind]
        entry: dict[str, Any] = {"flagged": len(hits)}
        if kind != "normal":
            entry["ips"] = len(members)
        if kind in attack_kinds:
            entry["recall"] = round(len(hits) / len(members), 4) if members else None
        result.per_kind[kind] = entry
    correct = sum(1 for ip in flagged if kinds.get(ip, "normal") in attack_kinds)
    result.false_positives = len(flagged) - correct
    result.precision = correct / len(flagged) if flagged else 1.0
    onset = parse_iso_us(labels["flood_onset"])
    flood_times = [t for ip, t in flagged.items() if kinds.get(ip) in ("flood", "low_rate_flood")]
    flood_times += [
        int(a.detected_at.timestamp() * 1e6)
        for a in global_alerts
        if a.severity.rank >= Severity.HIGH.rank
        and parse_iso_us(labels["flood_onset"])
        <= int(a.last_seen.timestamp() * 1e6)
        <= parse_iso_us(labels["flood_end"])
    ]
    if flood_times:
        result.flood_delay_s = round(max(0, min(flood_times) - onset) / 1e6, 1)
    result.high_global_alarms_in_flash_sale = _high_global_alarms(
        labels, "flash_sale", global_alerts
    )
    if "marketing_spike_start" in labels:
        result.high_global_alarms_in_marketing_spike = _high_global_alarms(
            labels, "marketing_spike", global_alerts
        )
    return result


def _high_global_alarms(labels: dict[str, Any], name: str, alerts: Sequence[Alert]) -> int:
    """Shop-wide alerts of high or above during a legitimate crowd (`name`_start to _end)
    that are not about the flood."""
    crowd = (parse_iso_us(labels[f"{name}_start"]), parse_iso_us(labels[f"{name}_end"]))
    flood = (parse_iso_us(labels["flood_onset"]), parse_iso_us(labels["flood_end"]))
    return sum(
        1
        for a in alerts
        if a.severity.rank >= Severity.HIGH.rank
        and crowd[0] <= int(a.last_seen.timestamp() * 1e6) <= crowd[1]
        and not flood[0] <= int(a.last_seen.timestamp() * 1e6) <= flood[1]
    )


def evaluate(
    events: pa.Table,
    labels: dict[str, Any],
    rules: list[Rule],
    *,
    waf_limit: int = 100,
    batch_s: float = 5.0,
) -> tuple[Score, Score, list[Alert]]:
    """(ecomwatch's score, the WAF rule's score, the alerts)."""
    alerts, records = run_detector(events, rules, batch_s=batch_s)
    global_alerts = [a for a in alerts if a.entity_type == "global"]
    ours = score("ecomwatch", detector_flags(alerts), labels, global_alerts)
    if "campaigns" in labels:
        ours.incidents = score_incidents([a.to_json() for a in alerts], records, labels)
    waf = score(f"waf-rate-{waf_limit}-per-5m", waf_flags(events, waf_limit), labels)
    return ours, waf, alerts


def flagged_by_alert_rows(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """`detector_flags` of alerts read back from JSON Lines (the latest version of each)."""
    flagged: dict[str, int] = {}
    for row in rows:
        if not is_flagging(row["severity"]):
            continue
        when = parse_iso_us(row["detected_at"])
        for ip in row["ips"]:
            flagged[ip] = min(flagged.get(ip, when), when)
    return flagged


def score_alert_rows(
    rows: Sequence[dict[str, Any]], events: pa.Table, labels: dict[str, Any], waf_limit: int = 100
) -> tuple[Score, Score]:
    """(ecomwatch's score, the WAF rule's) with ecomwatch's from alert lines a run wrote (the
    latest version of each alert), the WAF rule's from the events."""
    shop_wide = [Alert.from_json(dict(r)) for r in rows if r["entity_type"] == "global"]
    ours = score("ecomwatch", flagged_by_alert_rows(rows), labels, shop_wide)
    waf = score(f"waf-rate-{waf_limit}-per-5m", waf_flags(events, waf_limit), labels)
    return ours, waf
