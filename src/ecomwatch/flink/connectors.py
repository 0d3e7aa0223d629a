"""Where a Flink job reads events and writes alerts: `files:DIR`, `kinesis:STREAM_ARN`, `print`.

The filesystem connector, its CSV and raw formats and `print` ship inside PyFlink's wheel; the
Kinesis table connector (`flink-sql-connector-aws-kinesis-streams`) is a jar to add to the job
(the job directory's README says how). Its DDL here uses the options that connector's
documentation requires: `stream.arn`, `aws.region` (the ARN's own region),
`source.init.position` and `format`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ecomwatch.flink.compiler import interval

# The REES46 columns, in file order, as the source table declares them (times as text: the
# files write `2019-11-01 00:00:00 UTC`, which the event-time column `event_ts` parses).
SOURCE_COLUMNS = (
    ("event_time", "STRING"),
    ("event_type", "STRING"),
    ("product_id", "BIGINT"),
    ("category_id", "BIGINT"),
    ("category_code", "STRING"),
    ("brand", "STRING"),
    ("price", "DOUBLE"),
    ("user_id", "BIGINT"),
    ("user_session", "STRING"),
    ("ip", "STRING"),
    ("user_agent", "STRING"),
)
# A row whose time does not parse (the header line, a damaged row) gets this time and is
# dropped before any window: the rowtime column may not be null.
NO_TIME = "TIMESTAMP '1970-01-01 00:00:00'"

KINESIS_JAR = "flink-sql-connector-aws-kinesis-streams"


class EndpointError(ValueError):
    """A --source or --sink that is not one of the forms the job knows."""


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "files", "kinesis" or "print"
    target: str = ""  # the directory or the stream ARN

    @classmethod
    def parse(cls, text: str, *, sink: bool) -> Endpoint:
        kind, _, target = text.partition(":")
        kinds = ("files", "kinesis", "print") if sink else ("files", "kinesis")
        if kind not in kinds or (kind != "print" and not target) or (kind == "print" and target):
            forms = "files:DIR, kinesis:STREAM_ARN" + (" or print" if sink else "")
            raise EndpointError(f"{text!r}: expected {forms}")
        if kind == "kinesis":
            region(target)
        if kind == "files" and "://" not in target:
            target = str(Path(target).absolute())  # the job runs in its own directory
        return cls(kind, target)

    def to_text(self) -> str:
        return self.kind if self.kind == "print" else f"{self.kind}:{self.target}"


def region(arn: str) -> str:
    """The region of a Kinesis stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "kinesis" or not parts[5].startswith("stream/"):
        raise EndpointError(
            f"{arn!r} is not a Kinesis stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"
        )
    return parts[3]


def _options(pairs: dict[str, str]) -> str:
    return ",\n    ".join(f"'{k}' = '{v}'" for k, v in pairs.items())


def source_ddl(source: Endpoint, *, lateness_s: float) -> str:
    """The events table: REES46 columns, event time parsed, watermark `lateness_s` behind."""
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in SOURCE_COLUMNS)
    if source.kind == "files":
        options = {
            "connector": "filesystem",
            "path": source.target,
            "format": "csv",
            "csv.ignore-parse-errors": "true",
        }
    else:
        options = {
            "connector": "kinesis",
            "stream.arn": source.target,
            "aws.region": region(source.target),
            "source.init.position": "TRIM_HORIZON",
            "format": "json",
            "json.ignore-parse-errors": "true",
        }
    parsed = "TO_TIMESTAMP(REPLACE(SUBSTRING(event_time FROM 1 FOR 19), 'T', ' '))"
    return f"""CREATE TABLE events (
    {columns},
    event_ts AS COALESCE({parsed}, {NO_TIME}),
    WATERMARK FOR event_ts AS event_ts - {interval(math.ceil(lateness_s))}
) WITH (
    {_options(options)}
)"""


def sink_ddl(sink: Endpoint) -> str:
    """The alerts table: one JSON line per alert, the embedded detector's schema."""
    if sink.kind == "files":
        options = {"connector": "filesystem", "path": sink.target, "format": "raw"}
    elif sink.kind == "kinesis":
        options = {
            "connector": "kinesis",
            "stream.arn": sink.target,
            "aws.region": region(sink.target),
            "format": "raw",
        }
    else:
        options = {"connector": "print"}
    return f"""CREATE TABLE alerts (
    line STRING
) WITH (
    {_options(options)}
)"""
