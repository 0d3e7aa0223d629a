"""A Flink job's alerts correlated into incidents, by the embedded detector's correlator.

The job raises alerts; incidents are the correlator's (`detect/correlate.py`), run here over the
alerts the job wrote, in the order the job judged them (event time judged up to, then window,
id and severity), as the embedded detector runs it over its alerts as it raises them: each
alert line gets its `incident_id`, and every incident record that changed is returned.
"""

from __future__ import annotations

from typing import Any

from ecomwatch.config import IncidentsConfig
from ecomwatch.detect.alert import parse_iso_us
from ecomwatch.detect.cooldown import SEVERITY_ORDER
from ecomwatch.detect.correlate import Correlator


def correlate(
    alerts: list[dict[str, Any]],
    *,
    settings: IncidentsConfig,
    horizon_s: float,
    lateness_s: float,
    cooldowns_s: dict[str, float] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The alerts in judging order with their `incident_id`, and the incident records."""
    ordered = sorted(
        alerts,
        key=lambda a: (
            parse_iso_us(a["detected_at"]),
            parse_iso_us(a["window_start"]),
            a["alert_id"],
            SEVERITY_ORDER.index(a["severity"]),
        ),
    )
    correlator = Correlator(
        link_gap_s=settings.link_gap_s,
        quiet_s=settings.quiet_s,
        horizon_s=horizon_s,
        cooldowns_s=cooldowns_s,
    )
    correlated, records = [], []
    for alert in ordered:
        now_us = parse_iso_us(alert["detected_at"])
        correlator.advance(now_us - int(lateness_s * 1_000_000))
        correlated.append({**alert, "incident_id": correlator.add(alert, now_us)})
        records.extend(correlator.changed())
    return correlated, records
