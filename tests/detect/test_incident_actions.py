"""An operator's acknowledgement or resolution laid over the detector's incident records:
when each holds and when it lapses."""

from __future__ import annotations

import pytest

from ecomwatch.detect.incident_actions import (
    ActionError,
    apply_action,
    new_action,
    with_actions,
)


def record(**changes) -> dict:
    base = {
        "incident_id": "a1",
        "state": "open",
        "merged_into": None,
        "severity": "medium",
        "reopened": 0,
        "last_seen": "2026-12-01T10:05:00Z",
        "resolved_at": None,
    }
    return {**base, **changes}


AT = "2026-12-01T10:06:00Z"


def test_an_acknowledgement_holds_until_the_incident_escalates_or_flares_again():
    ack = new_action(record(), "acknowledge", by="dana", at=AT)
    later = record(last_seen="2026-12-01T10:20:00Z")  # more alerts, same severity
    assert apply_action(later, ack)["state"] == "acknowledged"
    assert apply_action(later, ack)["acknowledged_by"] == "dana"
    assert apply_action(record(severity="high"), ack)["state"] == "open"
    assert apply_action(record(state="resolved"), ack)["state"] == "resolved"
    assert apply_action(record(reopened=1), ack)["state"] == "open"


def test_a_resolution_holds_until_a_newer_alert_joins():
    resolve = new_action(record(), "resolve", by="dana", at=AT)
    done = apply_action(record(), resolve)
    assert (done["state"], done["resolved_at"], done["resolved_by"]) == ("resolved", AT, "dana")
    assert apply_action(record(last_seen="2026-12-01T10:30:00Z"), resolve)["state"] == "open"
    merged = record(state="merged", merged_into="a0")
    assert apply_action(merged, resolve) == merged


def test_the_latest_action_wins_and_records_are_not_changed():
    original = record()
    actions = [
        new_action(original, "acknowledge", by="dana", at=AT),
        new_action(record(state="acknowledged"), "resolve", by="lee", at=AT),
    ]
    assert with_actions({"a1": original}, actions)["a1"]["resolved_by"] == "lee"
    assert original["state"] == "open"


@pytest.mark.parametrize(
    ("state", "action", "message"),
    [
        ("resolved", "acknowledge", "already resolved"),
        ("acknowledged", "acknowledge", "already acknowledged"),
        ("merged", "resolve", "was merged into"),
        ("open", "close", "not 'close'"),
    ],
)
def test_actions_the_state_does_not_allow(state: str, action: str, message: str):
    with pytest.raises(ActionError, match=message):
        new_action(record(state=state, merged_into="a0"), action, by="dana", at=AT)
