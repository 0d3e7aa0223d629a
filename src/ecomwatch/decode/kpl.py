"""Records aggregated by the Kinesis Producer Library (KPL), taken apart.

The KPL packs many user records into one Kinesis record: the magic bytes `F3 89 9A C2`, a
protobuf `AggregatedRecord`, and the MD5 of the protobuf bytes. The message is parsed by the
`protobuf` package from a descriptor built here (the format's three messages), not by a
generated module: `aws-kinesis-agg`, the package that ships one, does not import with
protobuf ≥ 4.21. A record that starts with the magic bytes but whose digest does not match
is damaged (or not aggregated by the KPL at all) and is reported as a whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST_BYTES = 16


class AggregationError(ValueError):
    """An aggregated record that cannot be taken apart; the message says why."""


@dataclass(frozen=True)
class SubRecord:
    partition_key: str
    data: bytes


def is_aggregated(data: bytes) -> bool:
    return data.startswith(MAGIC)


@cache
def _aggregated_record_class() -> Any:
    field = descriptor_pb2.FieldDescriptorProto
    optional, required, repeated = (
        field.LABEL_OPTIONAL,
        field.LABEL_REQUIRED,
        field.LABEL_REPEATED,
    )

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> Any:
        proto = descriptor_pb2.DescriptorProto(name=name)
        for field_name, number, label, kind, type_name in fields:
            added = proto.field.add(name=field_name, number=number, label=label, type=kind)
            if type_name:
                added.type_name = type_name
        return proto

    text, u64, raw, sub = field.TYPE_STRING, field.TYPE_UINT64, field.TYPE_BYTES, field.TYPE_MESSAGE
    spec = descriptor_pb2.FileDescriptorProto(
        name="ecomwatch_kpl_aggregation.proto", package="ecomwatch.kpl", syntax="proto2"
    )
    spec.message_type.extend(
        [
            message("Tag", ("key", 1, required, text, ""), ("value", 2, optional, text, "")),
            message(
                "Record",
                ("partition_key_index", 1, required, u64, ""),
                ("explicit_hash_key_index", 2, optional, u64, ""),
                ("data", 3, required, raw, ""),
                ("tags", 4, repeated, sub, ".ecomwatch.kpl.Tag"),
            ),
            message(
                "AggregatedRecord",
                ("partition_key_table", 1, repeated, text, ""),
                ("explicit_hash_key_table", 2, repeated, text, ""),
                ("records", 3, repeated, sub, ".ecomwatch.kpl.Record"),
            ),
        ]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(spec)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("ecomwatch.kpl.AggregatedRecord")
    )


def deaggregate(data: bytes) -> list[SubRecord]:
    """The user records inside an aggregated record, in order (their sub-sequence numbers)."""
    if len(data) < len(MAGIC) + _DIGEST_BYTES:
        raise AggregationError("an aggregated record shorter than its magic bytes and digest")
    body, digest = data[len(MAGIC) : -_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.md5(body).digest() != digest:
        raise AggregationError("the aggregated record's MD5 does not match its contents")
    message = _aggregated_record_class()()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise AggregationError(f"the aggregated record is not a valid protobuf: {exc}") from exc
    keys = list(message.partition_key_table)
    records = []
    for record in message.records:
        index = record.partition_key_index
        if index >= len(keys):
            raise AggregationError(f"a sub-record names partition key {index} of {len(keys)}")
        records.append(SubRecord(keys[index], bytes(record.data)))
    return records


def aggregate(records: Sequence[SubRecord]) -> bytes:
    """Records packed as the KPL packs them (for producers and tests)."""
    message = _aggregated_record_class()()
    keys: dict[str, int] = {}
    for record in records:
        index = keys.setdefault(record.partition_key, len(keys))
        message.records.add(partition_key_index=index, data=record.data)
    message.partition_key_table.extend(keys)
    body = message.SerializeToString()
    return MAGIC + body + hashlib.md5(body).digest()
