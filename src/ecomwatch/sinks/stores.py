"""The alert state store's protocol, and opening one from `--store`: a SQLite file
(`alerts.db`, the embedded default) or a DynamoDB table (`dynamodb://TABLE`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ecomwatch.sinks.dynamodb_store import SCHEME


class AlertStateStore(Protocol):
    """Alerts upserted by `alert_id` (a replay changes nothing, an escalation raises the stored
    severity), state per entity, the blocks in force, and incidents (the detector's latest
    record of each, and apart from them the operators' latest action on each). A remote store
    keeps what it could not write in `failures` (`failed` of them, because `unreachable`) and
    sends it again when opened (`resent`); a local one never fails that way (0, None)."""

    resent: int
    failed: int
    failures: Path | None
    unreachable: str | None

    def add(self, alerts: list[dict[str, Any]]) -> None: ...

    def alerts_about(self, entity: str) -> list[dict[str, Any]]: ...

    def all_alerts(self) -> list[dict[str, Any]]: ...

    def blocklist(self, now: datetime | None = None) -> list[dict[str, Any]]: ...

    def add_incidents(self, records: list[dict[str, Any]]) -> None: ...

    def incident_records(self) -> dict[str, dict[str, Any]]: ...

    def add_incident_action(self, action: dict[str, Any]) -> None: ...

    def incident_actions(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def is_dynamodb(spec: str) -> bool:
    return spec.startswith(SCHEME)


def failures_file(spec: str, beside: Path | None = None) -> Path:
    """Where a DynamoDB store keeps the writes it could not make: beside the alerts file of the
    run when there is one, else in the working directory."""
    table = spec.removeprefix(SCHEME)
    if beside is not None:
        return beside.with_name(f"{beside.name}.{table}-failures.jsonl")
    return Path(f"dynamodb-{table}-failures.jsonl")


def journal_file(spec: str, beside: Path | None = None) -> Path:
    """Where a run journals the alerts it has not yet written to the store (StoreWriter):
    beside a SQLite file, or where a DynamoDB store keeps its failures."""
    if is_dynamodb(spec):
        failures = failures_file(spec, beside)
        return failures.with_name(failures.name.replace("-failures.jsonl", "-pending.jsonl"))
    return Path(f"{spec}.pending.jsonl")


def open_store(spec: str, *, beside: Path | None = None, create: bool = True) -> AlertStateStore:
    """`create=False` for commands that only read: a missing store is then an error."""
    if is_dynamodb(spec):
        from ecomwatch.sinks.dynamodb_store import DynamoAlertStore

        table = spec.removeprefix(SCHEME)
        return DynamoAlertStore(table, failures=failures_file(spec, beside), create=create)
    from ecomwatch.sinks.alert_store import AlertStore

    if not create and not Path(spec).exists():
        raise FileNotFoundError(spec)
    return AlertStore(spec)
