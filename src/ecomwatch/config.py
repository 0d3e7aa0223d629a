"""One typed configuration object, from a TOML file and `ECOMWATCH_*` environment variables.

Precedence: defaults < the TOML file < environment variables < command-line options.
Nested fields are set from the environment with a double underscore:
`ECOMWATCH_ENGINE__LATENESS_S=120`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "ECOMWATCH_"


class ConfigError(Exception):
    """The configuration is invalid; the message names the file or variable and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Strict):
    lateness_s: float = Field(300.0, ge=0, description="bounded out-of-orderness of event time")
    idle_timeout_s: float = Field(
        10.0, gt=0, description="quiet time before the clock moves the watermark"
    )
    checkpoint_rows: int = Field(2_000_000, ge=1, description="accepted rows between checkpoints")


class DecodeConfig(_Strict):
    chunk_bytes: int = Field(8 << 20, ge=4096, description="bytes of text parsed per chunk")
    threads: int = Field(2, ge=1, le=64, description="parser threads")


class WeblogConfig(_Strict):
    url_map: str | None = Field(
        None,
        description="which web requests are commerce events: a preset (magento2, woocommerce, "
        "shopify, prestashop) or a URL map file; none: every request stays a `request` event",
    )
    session_gap_s: float = Field(
        1800,
        gt=0,
        description="a web client (IP + user agent) quiet this long starts a new session",
    )
    format: Literal["auto", "nginx", "apache", "alb", "cloudfront"] = Field(
        "auto", description="the web logs' format; auto: known by each file's first lines"
    )
    session_cookie: str | None = Field(
        None,
        pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        description="the cookie that holds a session id (a trailing * matches a name's "
        "start), read where the log has cookies; else IP + user agent + inactivity",
    )


class LakeConfig(_Strict):
    format: Literal["hudi", "parquet"] = Field(
        "hudi", description="format of a new lake (an existing one keeps its own)"
    )


class DetectConfig(_Strict):
    ipv6_prefix: int = Field(
        56,
        ge=16,
        le=128,
        description="bits of an IPv6 address that make its subnet (the `subnet` key): 64, "
        "56 or 48 for one host's, household's or site's allocation",
    )
    judge_rows: int = Field(
        1_000_000,
        ge=0,
        description="rows read between rule evaluations of file input (0: every batch)",
    )
    file_threads: int = Field(
        0,
        ge=0,
        le=64,
        description="threads of the detector's queries on file input; 0: half the machine's "
        "cores, at least one (decoding and writing use the others)",
    )
    live_judge_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="largest share of the live service's time spent judging rules once its "
        "queue falls behind (while it keeps up, it judges every micro-batch)",
    )


class ServeConfig(_Strict):
    tokens: list[str] = Field(
        default_factory=list,
        description="bearer tokens the collector and API accept (also ECOMWATCH_TOKENS, "
        "comma-separated); none: no authentication",
    )
    max_body_bytes: int = Field(10 << 20, ge=1024, description="largest request body")
    max_batch_rows: int = Field(10_000, ge=1, description="most rows in one request")
    queue_events: int = Field(200_000, ge=1, description="events queued before 429")
    queue_seconds: float = Field(
        1.0,
        gt=0,
        description="longest time the oldest queued request may wait before new ones get 429 "
        "(keeps event-to-alert latency bounded when the pipeline is saturated)",
    )
    batch_seconds: float = Field(0.15, gt=0, description="longest wait to fill a micro-batch")
    batch_rows: int = Field(20_000, ge=1, description="events in a full micro-batch")
    commit_seconds: float = Field(5.0, gt=0, description="longest time data waits to commit")


class KinesisConfig(_Strict):
    poll_interval_s: float = Field(
        0.2, ge=0.2, description="least time between two GetRecords of one shard (5 a second)"
    )
    idle_poll_s: float = Field(1.0, gt=0, description="wait before polling a shard at its tip")
    list_interval_s: float = Field(60.0, gt=0, description="how often the shards are listed")
    target_events_per_call: int = Field(
        50_000, ge=1, description="events one GetRecords should carry (sets its Limit)"
    )
    retry_for_s: float = Field(
        300.0, gt=0, description="how long failing calls (not throttling) are retried"
    )


class MetricsConfig(_Strict):
    cloudwatch: bool = Field(
        False, description="publish the pipeline's metrics to CloudWatch (PutMetricData)"
    )
    emf: bool = Field(
        False, description="write the pipeline's metrics as CloudWatch Embedded Metric Format"
    )
    emf_path: str = Field(
        "-", description="where EMF lines go: - (standard output) or a file, appended to"
    )
    namespace: str = Field("ecomwatch", description="the CloudWatch namespace")
    pipeline: str = Field("default", description="the value of the `pipeline` dimension")
    interval_s: float = Field(60.0, ge=1, description="seconds aggregated into one datum")


class AwsConfig(_Strict):
    glue_database: str | None = Field(
        None, description="Glue database of the lake's table (lake register, glue_sync)"
    )
    glue_table: str = Field("ecomwatch_events", description="the table's name in Glue")
    glue_sync: bool = Field(
        False, description="register the table at start and add new partitions after commits"
    )

    @model_validator(mode="after")
    def _sync_needs_a_database(self) -> AwsConfig:
        if self.glue_sync and not self.glue_database:
            raise ValueError("glue_sync = true needs glue_database")
        return self


class IncidentsConfig(_Strict):
    link_gap_s: float = Field(
        900,
        ge=0,
        description="alerts sharing an IP, entity or group join one incident when their "
        "spans come within this many seconds",
    )
    quiet_s: float = Field(
        1800,
        gt=0,
        description="an incident resolves after this many seconds of event time without a "
        "new alert or a window its alerts' cooldown held (and reopens if an alert joins it)",
    )


class WebhookConfig(_Strict):
    format: Literal["json", "slack"] = Field(
        "json",
        description="json: one object per incident message; slack: Slack's incoming-webhook "
        'payload ({"text": …})',
    )
    min_severity: Literal["info", "low", "medium", "high", "critical"] = Field(
        "medium", description="incidents at this severity or above are announced one by one"
    )
    digest_minutes: float = Field(
        60, gt=0, description="incidents below min_severity are summed up this often"
    )
    group_wait_s: float = Field(
        60,
        ge=0,
        description="an incident's first message waits this long, folding in its "
        "first merges and escalations (a kind's first incident: its group's first flush)",
    )
    group_interval_s: float = Field(
        300,
        ge=0,
        description="an update of the same incident waits this long after the last; a "
        "kind's openings and resolutions go out together this often",
    )
    each_alert: bool = Field(
        False, description="also POST every alert (JSON arrays), as well as the incidents"
    )
    dashboard_url: str | None = Field(
        None, description="the dashboard's address, for links to incident pages in messages"
    )


class Config(_Strict):
    engine: EngineConfig = Field(default_factory=EngineConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    weblog: WeblogConfig = Field(default_factory=WeblogConfig)
    lake: LakeConfig = Field(default_factory=LakeConfig)
    kinesis: KinesisConfig = Field(default_factory=KinesisConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None = None, *, environ: dict[str, str] | None = None) -> Config:
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    env = _env_overrides(dict(os.environ if environ is None else environ))
    if env:
        origin = f"{origin} + {ENV_PREFIX}* environment"
    try:
        return Config.model_validate(_merge(data, env))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{origin}: {problems}") from exc
