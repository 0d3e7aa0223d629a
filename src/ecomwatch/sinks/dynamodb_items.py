"""The items of the DynamoDB state table (`--store dynamodb://TABLE`): its key design, how an
alert and a block become conditional writes, and how an item reads back as an alert.

Key design (partition key `pk`, sort key `sk`, both strings; on-demand capacity):

    item                   pk                       sk                   attributes
    an alert               ENTITY#<entity>          ALERT#<alert_id>     its fields, severity_rank
    a block                BLOCK#<ip or subnet>     <entity>             rule, severity, alert_id,
                                                                         expires_at, ttl
    the latest event time  META                     LATEST               detected_at
    an incident            INCIDENTS                INCIDENT#<id>        record (JSON),
                                                                         revision
    an operator's action   INCIDENTS                ACTION#<id>          action (JSON)

So one Query answers `explain ENTITY` (its alerts, and from them its state: how many, the
highest severity, the latest event; no state item to keep in step, nor one that grows with
every alert of a busy IP toward the 400 KB item limit), one Query per blockable type answers
the blocklist, one Query the incidents (a few thousand small items: one partition), and
nothing needs a scan but "every alert" (`report --exclude-bots`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecomwatch.sinks.alert_store import block_expiry, rank_of

TTL_ATTRIBUTE = "ttl"


class StoreError(Exception):
    """The store cannot be used at all (missing table, no permission): the message says why."""


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def attr_s(value: str) -> dict[str, str]:
    return {"S": value}


def attr_n(value: float) -> dict[str, str]:
    return {"N": str(value)}


def create_state_table(client: Any, table: str) -> bool:
    """Create the store's table as documented above (keys, on-demand, tagged), wait until it
    is active, turn TTL on; whether the server has TTL (dynalite has not)."""
    try:
        client.create_table(
            TableName=table,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            Tags=[{"Key": "created-by", "Value": "ecomwatch"}],
        )
        client.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
        )
    except client.exceptions.ResourceInUseException:
        pass  # another process created it meanwhile
    except (ClientError, BotoCoreError) as exc:
        raise StoreError(f"DynamoDB table {table}: CreateTable failed: {exc}") from exc
    try:
        client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "UnknownOperationException":
            return False  # an emulator without TTL (dynalite): reads still filter expiry
        raise StoreError(f"DynamoDB table {table}: UpdateTimeToLive: {exc}") from exc


def alert_put(table: str, a: dict[str, Any]) -> dict[str, Any]:
    """The conditional put of an alert: only if new, or this version ranks higher."""
    rank, count = rank_of(a["severity"]), int(a["count"])
    item = {
        "pk": attr_s(f"ENTITY#{a['entity']}"),
        "sk": attr_s(f"ALERT#{a['alert_id']}"),
        **{
            name: attr_s(str(a[name]))
            for name in (
                "alert_id", "rule", "severity", "entity_type", "entity", "first_seen",
                "last_seen", "detected_at", "explanation",
            )
        },
        "severity_rank": attr_n(rank),
        "alert_count": attr_n(count),
        "evidence": attr_s(json.dumps(a["evidence"])),
        "labels": attr_s(json.dumps(a.get("labels", []))),
        **({"incident_id": attr_s(a["incident_id"])} if a.get("incident_id") else {}),
    }  # fmt: skip
    return {
        "TableName": table,
        "Item": item,
        "ConditionExpression": "attribute_not_exists(pk) OR severity_rank < :r "
        "OR (severity_rank = :r AND alert_count < :c)",
        "ExpressionAttributeValues": {":r": attr_n(rank), ":c": attr_n(count)},
    }


def block_update(table: str, a: dict[str, Any], block: timedelta) -> dict[str, Any]:
    """The conditional update of the block an alert sets: its expiry only moves later (at
    the same expiry, to a higher severity)."""
    expires = block_expiry(a, block)
    assert expires is not None
    return {
        "TableName": table,
        "Key": {"pk": attr_s(f"BLOCK#{a['entity_type']}"), "sk": attr_s(a["entity"])},
        "UpdateExpression": "SET #rule = :rule, severity = :s, severity_rank = :r, "
        "alert_id = :id, expires_at = :e, #ttl = :ttl",
        "ConditionExpression": "attribute_not_exists(expires_at) OR expires_at < :e "
        "OR (expires_at = :e AND severity_rank < :r)",
        "ExpressionAttributeValues": {
            ":rule": attr_s(a["rule"]), ":s": attr_s(a["severity"]),
            ":r": attr_n(rank_of(a["severity"])), ":id": attr_s(a["alert_id"]),
            ":e": attr_s(iso(expires)),
            ":ttl": attr_n(int(expires.timestamp())),
        },
        "ExpressionAttributeNames": {"#rule": "rule", "#ttl": TTL_ATTRIBUTE},
    }  # fmt: skip


def alert_from_item(item: dict[str, Any]) -> dict[str, Any]:
    text = ("alert_id", "rule", "severity", "entity_type", "entity", "first_seen", "last_seen")
    return {
        **{name: item[name]["S"] for name in text},
        "detected_at": item["detected_at"]["S"],
        "count": int(item["alert_count"]["N"]),
        "evidence": json.loads(item["evidence"]["S"]),
        "explanation": item["explanation"]["S"],
        "labels": json.loads(item["labels"]["S"]),
        "incident_id": item["incident_id"]["S"] if "incident_id" in item else None,
    }


INCIDENTS = "INCIDENTS"


def incident_put(table: str, record: dict[str, Any]) -> dict[str, Any]:
    """A conditional put of an incident's record: only if it is new or at least as recent
    (its revision), so a replay of older records changes nothing."""
    return {
        "TableName": table,
        "Item": {
            "pk": attr_s(INCIDENTS),
            "sk": attr_s(f"INCIDENT#{record['incident_id']}"),
            "record": attr_s(json.dumps(record)),
            "revision": attr_n(record["revision"]),
        },
        "ConditionExpression": "attribute_not_exists(pk) OR revision <= :r",
        "ExpressionAttributeValues": {":r": attr_n(record["revision"])},
    }


def action_put(table: str, action: dict[str, Any]) -> dict[str, Any]:
    return {
        "TableName": table,
        "Item": {
            "pk": attr_s(INCIDENTS),
            "sk": attr_s(f"ACTION#{action['incident_id']}"),
            "action": attr_s(json.dumps(action)),
        },
    }
