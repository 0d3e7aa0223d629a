"""Detection rules are data: small TOML specs, strictly validated, compiled once.

A rule names a key (who is judged), a window, a condition over the window features of that key,
a severity, an optional escalation and a cooldown:

    [[rule]]
    name = "fast-scraper"
    key = "ip"
    window = "1m"
    condition = "views >= 120 and distinct_products >= 60 and purchases == 0"
    severity = "high"
    cooldown = "15m"
    labels = ["scraper"]

The condition language is the intersection of Python and SQL boolean expressions: feature
names, numbers, `+ - * /`, comparisons, `and`, `or`, `not`, parentheses. It is parsed and checked
at load time (an unknown feature or any other construct is an error naming the file, the rule
and the field) and compiled to a SQL expression, which DuckDB evaluates here and which the Flink
job will evaluate the same way.
"""

from __future__ import annotations

import ast
import math
import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ecomwatch.detect.features import (
    CHEAP_FEATURES,
    COUNTED_ROWS,
    FEATURES,
    ROUND_COUNTED_ROWS,
)
from ecomwatch.detect.web_flags import WebFlag


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


# Alerts at this severity or above flag their IPs, sessions and users: blocks, evaluation,
# the analytics without bots and the dashboard's flagged share all use it.
FLAGGING = Severity.MEDIUM


def is_flagging(severity: Severity | str) -> bool:
    return Severity(severity).rank >= FLAGGING.rank


class KeyKind(StrEnum):
    IP = "ip"
    SUBNET = "subnet"  # the /24 of an IPv4 address, the /56 of an IPv6 one
    PRODUCT = "product"  # a product (carts of one product by many)
    CATEGORY = "category"  # a category id (views of one category by many)
    USER = "user"
    SESSION = "session"
    USER_AGENT = "user_agent"
    GLOBAL = "global"


class RuleError(ValueError):
    """A rule file is invalid; the message names the file, the rule and the field."""


_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """`90s`, `5m`, `1h`, `1d` → seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h or 1d")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


class MembersSpec(BaseModel):
    """Who in a flagged group (a subnet, a user agent, the whole shop) is flagged with it.

    Features are computed per member key over the group's events in the member window (a
    tumbling window, at least the rule's); each member meeting the condition gets its own alert,
    and the group is flagged only when at least `min` members do, and at least `min_share` of
    the group's distinct IPs in its window (a share stays the same in a small shop and a big
    one, where a count of odd-looking visitors grows with the traffic).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Literal[KeyKind.IP, KeyKind.USER, KeyKind.SESSION] = KeyKind.IP
    window: str | None = None  # default: the rule's window
    condition: str
    min: int = Field(default=1, ge=1)
    min_share: float = Field(default=0.0, ge=0.0, le=1.0)

    def least(self, group_ips: int) -> int:
        """How many members flag a group with `group_ips` distinct IPs in its window."""
        return max(self.min, math.ceil(self.min_share * group_ips))

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("condition")
    @classmethod
    def _expression(cls, value: str) -> str:
        compile_condition(value)
        return value


class RuleSpec(BaseModel):
    """One rule as written in a rule file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    key: KeyKind
    window: str
    filter: str | None = None
    condition: str
    severity: Severity
    escalate_when: str | None = None
    escalate_to: Severity | None = None
    cooldown: str = "15m"
    labels: tuple[str, ...] = ()
    members: MembersSpec | None = None

    @field_validator("window", "cooldown")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is not None:
            compile_filter(value)
        return value

    @field_validator("condition", "escalate_when")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is not None:
            compile_condition(value)
        return value


@dataclass(frozen=True)
class Rule:
    """A rule compiled for the engine: durations in seconds, conditions as SQL."""

    spec: RuleSpec
    window_s: int
    cooldown_s: int
    condition_sql: str
    escalate_sql: str | None
    filter_sql: str  # rows the rule looks at ("TRUE": all)
    features: tuple[str, ...]  # the features its conditions read (and its evidence shows)
    # The features its windows are aggregated with: `features` less `distinct_ips` when only
    # `members.min_share` reads it (the engine counts the IPs of the groups with enough members).
    window_features: tuple[str, ...] = ()
    prefilter_sql: str = "TRUE"  # the condition's conjuncts over cheap features only
    prefilter_features: tuple[str, ...] = ()
    # A row every window meeting the condition holds (None: no such row is known), and how
    # many of them it holds at least (`cart-abuse`: 12 carts).
    needed_row_sql: str | None = None
    needed_row_count: int = 1
    # Rows of which a round's judged rows must hold this many for any window to meet the
    # condition (product views too): a round with fewer skips the rule.
    round_need: tuple[str, int] | None = None
    members_sql: str | None = None  # the member condition, compiled
    members_window_s: int = 0
    member_features: tuple[str, ...] = ()
    # Rows every member holds, and how many at least (`needed_rows` of the member condition).
    members_need: tuple[str, int] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def screens(self) -> bool:
        """Whether its windows are first screened by the condition's cheap part: when the
        condition reads costly features and has one, and no baseline (which averages the
        key's earlier windows: screening would leave out those that fail the cheap part)."""
        if {"baseline", "baseline_funnel"} & set(self.features):
            return False
        return bool(set(self.window_features) - CHEAP_FEATURES) and self.prefilter_sql != "TRUE"

    @property
    def retention_s(self) -> int:
        """How long the rule needs an event after its time: its longest window."""
        return max(self.window_s, self.members_window_s)


_COMPARE = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "=",
    ast.NotEq: "<>",
}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _has(flag: WebFlag) -> str:
    return f"CAST((web_flags & {int(flag)}) <> 0 AS INTEGER)"


# Event columns a rule's `filter` may test (with numbers and 'quoted' strings).
FILTER_COLUMNS = {
    "event_type": "event_type",
    "price": "price",
    "declared_bot": "CAST(declared_bot AS INTEGER)",
    "search_engine": "CAST(search_engine AS INTEGER)",
    "status": "status",
    # `web_flags` bits: 1 when the row's request has it
    "web_request": _has(WebFlag.WEB),
    "static": _has(WebFlag.STATIC),  # a web request for a static file
    "verified_crawler": _has(WebFlag.VERIFIED_CRAWLER),
    "spoofed_crawler": _has(WebFlag.SPOOFED_CRAWLER),
}


def compile_filter(text: str) -> str:
    """The SQL form of a rule's row filter; ValueError if it is not valid."""
    sql, _ = compile_condition(text, names=FILTER_COLUMNS, strings=True)
    return sql


def compile_condition(
    text: str, *, names: dict[str, str] | None = None, strings: bool = False
) -> tuple[str, tuple[str, ...]]:
    """The SQL form of a condition and the names it uses; ValueError if it is not valid.

    `names` maps allowed names to their SQL (default: the window features).
    """
    allowed = names if names is not None else {name: name for name in FEATURES}
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {text!r}: {exc.msg}") from None
    used: list[str] = []

    def emit(node: ast.AST) -> str:
        if isinstance(node, ast.BoolOp):
            joiner = " AND " if isinstance(node.op, ast.And) else " OR "
            return "(" + joiner.join(emit(v) for v in node.values) + ")"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return f"(NOT {emit(node.operand)})"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return f"(-{emit(node.operand)})"
        if isinstance(node, ast.Compare):
            parts, left = [], node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                if type(op) not in _COMPARE:
                    raise ValueError(f"operator {type(op).__name__} is not allowed")
                parts.append(f"{emit(left)} {_COMPARE[type(op)]} {emit(right)}")
                left = right
            return "(" + " AND ".join(parts) + ")"
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            symbol = _ARITH[type(node.op)]
            if symbol == "/":  # a ratio over an empty window is NULL (false), not an error
                return f"({emit(node.left)} / NULLIF({emit(node.right)}, 0))"
            return f"({emit(node.left)} {symbol} {emit(node.right)})"
        if isinstance(node, ast.Name):
            if node.id not in allowed:
                kind = "feature" if names is None else "column"
                raise ValueError(
                    f"unknown {kind} {node.id!r} (known: {', '.join(sorted(allowed))})"
                )
            used.append(node.id)
            return allowed[node.id]
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return repr(node.value)
        if strings and isinstance(node, ast.Constant) and isinstance(node.value, str):
            return "'" + node.value.replace("'", "''") + "'"
        raise ValueError(f"{ast.unparse(node)!r} is not allowed in a condition")

    sql = emit(tree.body)
    return sql, tuple(dict.fromkeys(used))


def prefilter(condition: str) -> tuple[str, tuple[str, ...]]:
    """A condition over cheap features only that every window meeting `condition` meets (and
    those features): its cheap conjuncts, and of an `or` whose every branch has some, the `or`
    of those. Windows failing it are skipped before the costly features (distinct counts,
    timing) are computed. "TRUE" when there is none.
    """
    necessary = _cheap_part(ast.parse(condition, mode="eval").body)
    if necessary is None:
        return "TRUE", ()
    return compile_condition(ast.unparse(necessary))


def needed_rows(condition: str, counted: dict[str, str] = COUNTED_ROWS) -> tuple[str, int] | None:
    """An SQL predicate over events such that every window meeting `condition` holds rows
    that meet it, and how many at least (`probes >= 3`: 3; of an `or`, the fewest of its
    branches'): from a conjunct that wants a count of such rows (`counted`) above 0, or an
    `or` of branches that each have one. None when there is none."""
    return _needed_rows(ast.parse(condition, mode="eval").body, counted)


def _needed_rows(node: ast.expr, counted: dict[str, str]) -> tuple[str, int] | None:
    if isinstance(node, ast.BoolOp):
        found = [_needed_rows(value, counted) for value in node.values]
        if isinstance(node.op, ast.And):
            # The conjunct that asks for the most rows screens the most windows out.
            known = [row for row in found if row is not None]
            return max(known, key=lambda row: row[1]) if known else None
        if any(row is None for row in found):
            return None
        rows = [row for row in found if row is not None]
        either = " OR ".join(f"({row})" for row in dict.fromkeys(row for row, _ in rows))
        return either, min(least for _, least in rows)
    if not isinstance(node, ast.Compare) or len(node.ops) != 1:
        return None
    left, op, right = node.left, node.ops[0], node.comparators[0]
    if isinstance(left, ast.Constant):  # `3 <= probes` is `probes >= 3`
        flipped = {ast.Lt: ast.Gt, ast.LtE: ast.GtE}.get(type(op))
        if flipped is None:
            return None
        left, op, right = right, flipped(), left
    if not (isinstance(left, ast.Name) and left.id in counted):
        return None
    if not (isinstance(right, ast.Constant) and isinstance(right.value, int | float)):
        return None
    bound = float(right.value)
    # A count is a whole number: `>= 2.5` wants 3 rows, `> 2` wants 3.
    if isinstance(op, ast.GtE):
        least = math.ceil(bound)
    elif isinstance(op, ast.Gt):
        least = math.floor(bound) + 1
    else:
        return None
    return (counted[left.id], least) if least > 0 else None


def _cheap_part(node: ast.expr) -> ast.expr | None:
    """What `node` implies over cheap features only, or None when that is nothing."""
    if isinstance(node, ast.BoolOp):
        parts = [_cheap_part(value) for value in node.values]
        if isinstance(node.op, ast.Or) and any(part is None for part in parts):
            return None  # a branch with no cheap part can hold on its own
        kept = [part for part in parts if part is not None]
        if not kept:
            return None
        return kept[0] if len(kept) == 1 else ast.BoolOp(op=node.op, values=kept)
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return node if names <= CHEAP_FEATURES else None


def compile_rule(spec: RuleSpec) -> Rule:
    condition_sql, used = compile_condition(spec.condition)
    prefilter_sql, prefilter_features = prefilter(spec.condition)
    escalate_sql = None
    if spec.escalate_when is not None:
        escalate_sql, more = compile_condition(spec.escalate_when)
        used = tuple(dict.fromkeys(used + more))
    window_s = parse_duration(spec.window)
    needed = needed_rows(spec.condition)
    members_sql: str | None = None
    member_features: tuple[str, ...] = ()
    members_window_s = 0
    window_features = used  # what the conditions read
    if spec.members is not None:
        members_sql, member_features = compile_condition(spec.members.condition)
        if spec.members.min_share:  # the share is of the group's distinct IPs
            used = tuple(dict.fromkeys((*used, "distinct_ips")))
        members_window_s = max(window_s, parse_duration(spec.members.window or spec.window))
    return Rule(
        spec=spec,
        window_s=window_s,
        cooldown_s=parse_duration(spec.cooldown),
        condition_sql=condition_sql,
        escalate_sql=escalate_sql,
        filter_sql=compile_filter(spec.filter) if spec.filter else "TRUE",
        features=used,
        window_features=window_features,
        prefilter_sql=prefilter_sql,
        prefilter_features=prefilter_features,
        # A baseline reads the key's earlier windows, skipped ones too: none are skipped.
        needed_row_sql=(
            None if needed is None or {"baseline", "baseline_funnel"} & set(used) else needed[0]
        ),
        needed_row_count=1 if needed is None else needed[1],
        round_need=(
            None
            if {"baseline", "baseline_funnel"} & set(used)
            else needed_rows(spec.condition, ROUND_COUNTED_ROWS)
        ),
        members_sql=members_sql,
        members_window_s=members_window_s,
        member_features=member_features,
        members_need=(
            needed_rows(spec.members.condition)
            if spec.members and not {"baseline", "baseline_funnel"} & set(member_features)
            else None
        ),
    )


def window_of(spec: RuleSpec) -> int:
    return parse_duration(spec.window)


def _load_file(path: Path | str, text: str) -> list[Rule]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: not valid TOML ({exc})") from exc
    unknown = set(data) - {"rule"}
    if unknown:
        raise RuleError(
            f"{path}: unknown top-level field(s) {sorted(unknown)}; rules go in [[rule]]"
        )
    rules = []
    for index, raw in enumerate(data.get("rule", [])):
        label = raw.get("name", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
        try:
            spec = RuleSpec.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"field {'.'.join(str(p) for p in e['loc']) or '(rule)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise RuleError(f"{path}: rule {label}: {problems}") from exc
        if (spec.escalate_when is None) != (spec.escalate_to is None):
            raise RuleError(f"{path}: rule {label}: escalate_when and escalate_to go together")
        members_window = spec.members.window if spec.members is not None else None
        if members_window is not None and parse_duration(members_window) % window_of(spec):
            raise RuleError(
                f"{path}: rule {label}: field members.window: must be a whole multiple of "
                f"the rule's window ({spec.window})"
            )
        rules.append(compile_rule(spec))
    return rules


def default_rules() -> list[Rule]:
    text = resources.files("ecomwatch.detect").joinpath("default_rules.toml").read_text()
    return _load_file("ecomwatch/detect/default_rules.toml", text)


def load_rules(paths: list[Path] | None = None, *, defaults: bool = True) -> list[Rule]:
    """The default rules, then each file's: a rule with an existing name replaces it."""
    by_name: dict[str, Rule] = {r.name: r for r in default_rules()} if defaults else {}
    for path in paths or []:
        try:
            text = path.read_text()
        except OSError as exc:
            raise RuleError(f"{path}: cannot read the rule file ({exc.strerror})") from exc
        for rule in _load_file(path, text):
            by_name[rule.name] = rule
    return list(by_name.values())
