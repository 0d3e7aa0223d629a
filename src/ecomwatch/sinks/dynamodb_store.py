"""The alert state store on Amazon DynamoDB (`--store dynamodb://TABLE`): the same alerts,
entity state and blocklist as the SQLite store, in one table.

The table's items and their key design: dynamodb_items.py.

Every write is idempotent, so a replay after a crash changes nothing: an alert is put only if
it is new or this version ranks higher (severity, then count) — `ConditionalCheckFailed` means
"already stored"; a block's expiry only moves later (at the same expiry, to a higher
severity). `ttl` (epoch seconds) is the attribute DynamoDB's TTL deletes by, and since TTL
deletes lazily (up to days late), reads filter out expired blocks themselves.
Throttling and connection errors are retried by botocore (standard mode, 10 attempts); a write
that still fails goes to a local failures file, named in the summary, and so does every later
write of that store (the table is unreachable: the rest are not each retried for a minute);
they are sent again the next time the store is opened.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from ecomwatch.aws_settings import region
from ecomwatch.sinks.alert_store import BLOCKABLE, block_expiry, rank_of
from ecomwatch.sinks.dynamodb_items import (
    INCIDENTS,
    StoreError,
    action_put,
    alert_from_item,
    alert_put,
    attr_s,
    block_update,
    create_state_table,
    incident_put,
    iso,
)
from ecomwatch.sinks.jsonl import read_json_lines

SCHEME = "dynamodb://"
WRITERS = 16  # calls made side by side (each alert's own writes stay in order)
ATTEMPTS = 10
TRANSACTION_WRITES = 100  # DynamoDB's limit per TransactWriteItems call
TX_BYTES = 2_000_000  # and well under its 4 MB a call
# Reasons a write of a cancelled transaction is worth sending again after a pause.
_TRANSIENT = ("TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded")


@contextlib.contextmanager
def _already_done() -> Iterator[None]:
    """A failed condition of an idempotent write: what it would write is there already. (By
    error code: a client's exception classes are made lazily, and two threads may each make
    their own, so `except client.exceptions.…` can miss.)"""
    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise


def _version(alert: dict[str, Any]) -> tuple[int, int]:
    """Which of two versions of an alert stands: the higher severity, then the higher count."""
    return rank_of(alert["severity"]), int(alert["count"])


class _NoTransactions(Exception):
    """The server has no TransactWriteItems (dynalite)."""


class DynamoAlertStore:
    def __init__(
        self,
        table: str,
        *,
        failures: Path,
        block_hours: float = 24.0,
        create: bool = True,
        endpoint: str | None = None,
        attempts: int = ATTEMPTS,
    ) -> None:
        self.table = table
        self.failures: Path | None = failures
        self.failed = 0  # writes that went to the failures file in this process
        self.block = timedelta(hours=block_hours)
        retries = BotoConfig(
            retries={"mode": "standard", "max_attempts": attempts},
            max_pool_connections=WRITERS + 2,
        )
        session = boto3.session.Session()
        self.client = session.client(
            "dynamodb", region_name=region(session), endpoint_url=endpoint, config=retries
        )
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="dynamodb")
        self.unreachable: str | None = None  # why writes stopped being tried
        self.ttl_enabled: bool | None = None  # known once this process created the table
        self.transactions: bool | None = None  # whether the server has TransactWriteItems
        self.resent = 0  # writes of an earlier run sent again at opening
        self._ensure_table(create)
        self._resend_failures()

    # setup ---------------------------------------------------------------------------------

    def _ensure_table(self, create: bool) -> None:
        try:
            self.client.describe_table(TableName=self.table)
            return
        except self.client.exceptions.ResourceNotFoundException:
            if not create:
                raise StoreError(f"DynamoDB table {self.table} does not exist") from None
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"DynamoDB table {self.table}: DescribeTable failed: {exc}") from exc
        self.ttl_enabled = create_state_table(self.client, self.table)

    # writing -------------------------------------------------------------------------------

    def add(self, alerts: list[dict[str, Any]]) -> None:
        """Store alerts (any order, repeats and older versions included); what cannot be
        written after retries goes to the failures file."""
        if not alerts:
            return
        # One version per alert (the highest), and one entity's items written by one worker
        # in turn: entities side by side, never one item from two threads (conditions hold on
        # DynamoDB either way, not on every emulator).
        highest: dict[str, dict[str, Any]] = {}
        for alert in alerts:
            known = highest.get(alert["alert_id"])
            if known is None or _version(alert) > _version(known):
                highest[alert["alert_id"]] = alert
        if self.transactions is not False:
            try:
                self._add_in_transactions(list(highest.values()))
            except _NoTransactions:
                self.transactions = False  # an emulator without them: one call per write
            else:
                self.transactions = True
                self._set_latest(max(a["detected_at"] for a in alerts))
                return
        by_entity: dict[str, list[dict[str, Any]]] = {}
        for alert in highest.values():
            by_entity.setdefault(alert["entity"], []).append(alert)
        list(self._pool.map(self._add_entity, by_entity.values()))
        self._set_latest(max(a["detected_at"] for a in alerts))

    def add_incidents(self, records: list[dict[str, Any]]) -> None:
        """The latest record of each incident (older ones are skipped by the condition)."""
        latest: dict[str, dict[str, Any]] = {}
        for record in records:
            known = latest.get(record["incident_id"])
            if known is None or record["revision"] >= known["revision"]:
                latest[record["incident_id"]] = record
        list(self._pool.map(self._put_incident, latest.values()))

    def _put_incident(self, record: dict[str, Any]) -> None:
        def put() -> None:
            with _already_done():
                self.client.put_item(**incident_put(self.table, record))

        self._write([{"op": "incident", "record": record}], put)

    def add_incident_action(self, action: dict[str, Any]) -> None:
        """An operator's action: written now or an error (a person is waiting for it)."""
        self._read("PutItem", self.client.put_item, action_put(self.table, action))

    def incident_records(self) -> dict[str, dict[str, Any]]:
        items = self._query(
            "pk = :pk AND begins_with(sk, :i)",
            {":pk": attr_s(INCIDENTS), ":i": attr_s("INCIDENT#")},
        )
        records = [json.loads(i["record"]["S"]) for i in items]
        return {r["incident_id"]: r for r in records}

    def incident_actions(self) -> list[dict[str, Any]]:
        items = self._query(
            "pk = :pk AND begins_with(sk, :a)",
            {":pk": attr_s(INCIDENTS), ":a": attr_s("ACTION#")},
        )
        return [json.loads(i["action"]["S"]) for i in items]

    # in transactions (DynamoDB, moto): up to 100 conditional writes a call -------------------

    def _add_in_transactions(self, alerts: list[dict[str, Any]]) -> None:
        """Each alert's put, and the block of each blockable entity (the one that lasts
        longest of this batch's), as conditional writes grouped 100 to a TransactWriteItems
        call: a twentieth of the client's CPU per write of one call each. A condition that
        fails cancels the whole call; its reasons say which writes were already done, and the
        others are sent again without them."""
        blocks: dict[tuple[str, str], dict[str, Any]] = {}  # entity → the alert to block by
        for alert in alerts:
            strength = self._block_strength(alert)
            if strength is None:
                continue
            known = blocks.get((alert["entity_type"], alert["entity"]))
            if known is None or strength > (self._block_strength(known) or strength):
                blocks[(alert["entity_type"], alert["entity"])] = alert
        blocking = {id(alert) for alert in blocks.values()}
        chunks: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [([], [])]
        size = 0
        for alert in alerts:
            writes = [{"Put": alert_put(self.table, alert)}]
            if id(alert) in blocking:
                writes.append({"Update": block_update(self.table, alert, self.block)})
            weight = len(json.dumps(writes))
            ops, members = chunks[-1]
            if ops and (len(ops) + len(writes) > TRANSACTION_WRITES or size + weight > TX_BYTES):
                chunks.append(([], []))
                ops, members, size = *chunks[-1], 0
            ops += writes
            members.append(alert)
            size += weight
        first, *rest = chunks  # the first alone: it tells whether the server has transactions
        self._transact_chunk(first)
        list(self._pool.map(self._transact_chunk, rest))

    def _block_strength(self, alert: dict[str, Any]) -> tuple[datetime, int] | None:
        """Which of two alerts sets an entity's block: the later expiry, then the higher
        severity (the order the block's condition keeps); None if it blocks nothing."""
        expires = block_expiry(alert, self.block)
        return None if expires is None else (expires, rank_of(alert["severity"]))

    def _transact_chunk(self, chunk: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
        ops, members = chunk
        if ops:
            self._write([{"op": "alert", "alert": a} for a in members], lambda: self._transact(ops))

    def _transact(self, ops: list[dict[str, Any]]) -> None:
        pending = ops
        for attempt in range(ATTEMPTS):
            try:
                self.client.transact_write_items(TransactItems=pending)
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code == "UnknownOperationException":
                    raise _NoTransactions from exc
                if code != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons") or []
                if len(reasons) != len(pending):
                    raise
            again, contended = [], False
            for op, reason in zip(pending, reasons, strict=True):
                why = reason.get("Code", "None")
                if why == "ConditionalCheckFailed":
                    continue  # this version or a higher one is stored: already done
                if why not in ("None", *_TRANSIENT):
                    raise StoreError(f"DynamoDB table {self.table}: a write failed: {reason}")
                contended = contended or why in _TRANSIENT
                again.append(op)
            if not again:
                return
            pending = again
            if contended:
                time.sleep(min(0.05 * 2**attempt, 2.0))
        raise StoreError(f"DynamoDB table {self.table}: writes still contended after retries")

    # one call per write (dynalite) --------------------------------------------------------

    def _set_latest(self, stamp: str) -> None:
        self._write(
            [{"op": "latest", "detected_at": stamp}],
            lambda: self._update_if(
                {"pk": attr_s("META"), "sk": attr_s("LATEST")},
                "SET detected_at = :t",
                "attribute_not_exists(detected_at) OR detected_at < :t",
                {":t": attr_s(stamp)},
            ),
        )

    def _add_entity(self, alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            self._write([{"op": "alert", "alert": alert}], lambda a=alert: self._put_alert(a))

    def _put_alert(self, a: dict[str, Any]) -> None:
        # ConditionalCheckFailed: this version or a higher one is stored, already done.
        with _already_done():
            self.client.put_item(**alert_put(self.table, a))
        if block_expiry(a, self.block) is not None:
            with _already_done():
                self.client.update_item(**block_update(self.table, a, self.block))

    def _update_if(
        self,
        key: dict[str, Any],
        update: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> None:
        """A conditional update whose failed condition means "already as high"."""
        with _already_done():
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": names} if names else {}),
            )

    def _write(self, records: list[dict[str, Any]], call: Any) -> None:
        """Make a write (retried by botocore); what fails is kept in the failures file as
        `records`, and so is every later write once the table is unreachable."""
        error = self.unreachable
        if error is None:
            try:
                call()
                return
            except (ClientError, BotoCoreError, StoreError) as exc:
                error = self.unreachable = str(exc)
        assert self.failures is not None
        with self._lock:
            self.failed += len(records)
            self.failures.parent.mkdir(parents=True, exist_ok=True)
            with self.failures.open("a") as out:
                out.write("".join(json.dumps({**r, "error": error}) + "\n" for r in records))

    def _resend_failures(self) -> None:
        """Writes a past run could not make, tried again (idempotent, so safe to repeat). They
        are moved aside first, so that what fails again is written anew to the failures file,
        and removed only once tried: a crash meanwhile leaves them to the next opening."""
        if self.failures is None:
            return
        sending = self.failures.with_name(self.failures.name + ".sending")
        if self.failures.exists():  # (a crash between these two lines only sends some twice)
            with sending.open("a") as out:
                out.write(self.failures.read_text())
            self.failures.unlink()
        if not sending.exists():
            return
        pending = read_json_lines(sending)
        self.add([r["alert"] for r in pending if r["op"] == "alert"])
        self.add_incidents([r["record"] for r in pending if r["op"] == "incident"])
        latest = [r["detected_at"] for r in pending if r["op"] == "latest"]
        if latest:
            self._set_latest(max(latest))
        sending.unlink()
        self.resent = len(pending)

    # reading -------------------------------------------------------------------------------

    def alerts_about(self, entity: str) -> list[dict[str, Any]]:
        """The alerts whose entity is `entity`, as the dicts they were added as."""
        items = self._query(
            "pk = :pk AND begins_with(sk, :alert)",
            {":pk": attr_s(f"ENTITY#{entity}"), ":alert": attr_s("ALERT#")},
        )
        return sorted((alert_from_item(i) for i in items), key=lambda a: a["detected_at"])

    def entity_state(self, entity: str) -> list[dict[str, Any]]:
        """Per entity type: how many alerts, the highest severity, the latest event seen."""
        by_type: dict[str, list[dict[str, Any]]] = {}
        for alert in self.alerts_about(entity):
            by_type.setdefault(alert["entity_type"], []).append(alert)
        return [
            {
                "entity_type": kind,
                "entity": entity,
                "alerts": len(alerts),
                "severity": max((a["severity"] for a in alerts), key=rank_of),
                "last_seen": max(a["last_seen"] for a in alerts),
            }
            for kind, alerts in sorted(by_type.items())
        ]

    def all_alerts(self) -> list[dict[str, Any]]:
        found = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(sk, :alert)",
            "ExpressionAttributeValues": {":alert": attr_s("ALERT#")},
        }
        while True:
            page = self._read("Scan", self.client.scan, kwargs)
            found += [alert_from_item(i) for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return sorted(found, key=lambda a: a["detected_at"])
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def blocklist(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Blocks in force at `now` (default: the latest event time the store has seen)."""
        if now is None:
            meta = self._read(
                "GetItem",
                self.client.get_item,
                {"TableName": self.table, "Key": {"pk": attr_s("META"), "sk": attr_s("LATEST")}},
            ).get("Item")
            stamp = meta["detected_at"]["S"] if meta else iso(datetime.now(UTC))
        else:
            stamp = iso(now)
        blocks = []
        for kind in BLOCKABLE:
            for item in self._query("pk = :pk", {":pk": attr_s(f"BLOCK#{kind}")}):
                if item["expires_at"]["S"] > stamp:  # TTL deletes late: filter here too
                    blocks.append(
                        {
                            "entity_type": kind,
                            "entity": item["sk"]["S"],
                            **{
                                name: item[name]["S"]
                                for name in ("rule", "severity", "alert_id", "expires_at")
                            },
                        }
                    )
        return sorted(blocks, key=lambda b: (b["entity_type"], b["entity"]))

    def _query(self, condition: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        while True:
            page = self._read("Query", self.client.query, kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _read(self, name: str, call: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = call(**kwargs)
            return result
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"DynamoDB table {self.table}: {name} failed: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown()
