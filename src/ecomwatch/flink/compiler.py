"""Rule specs → Flink SQL: the second compiler of the same specs (DESIGN principle 5).

The embedded detector judges a window while it fills: each rule is re-evaluated every 1/60 of
its window in event time (`Detector._tick`) over the window's events so far, and raises an
alert the first time the condition holds. Flink 2.3 refuses early-fire options on window
table-valued-function aggregates, so each rule is a CUMULATE window of the rule's size whose
step is that same 1/60: every step emits the window's aggregate so far, exactly the prefixes
the embedded engine judges, and the condition filters them. Which matched steps become alerts
(one per entity per cooldown, escalated in place, the same `alert_id`) is decided downstream in
the job by a keyed process function running `detect/cooldown.py` itself.

A rule compiles when every feature it reads has a Flink SQL form here; `unsupported` says why
one does not. The condition language is compiled by the same parser as for DuckDB, with every
feature cast to DOUBLE (Flink divides integers as integers; DuckDB does not).
"""

from __future__ import annotations

from dataclasses import dataclass

from ecomwatch.detect.alerting import explanation_template, member_explanation_template
from ecomwatch.detect.features import LONG_TAIL
from ecomwatch.detect.rules import KeyKind, Rule, compile_condition

# The view the rules read: the source's events with the columns features need, from the
# job's UDFs: `agent_code` (0 a browser, 1 a declared bot, 2 a search engine) and
# `crawler_code` (`crawler_claims`: 0 no claim, 1 claimed, 2 verified, 3 spoofed).
EVENTS_VIEW = "rule_events"


def _crawler_is(code: int) -> str:
    return f"CASE WHEN crawler_code {'>=' if code == 1 else '='} {code} THEN 1 ELSE 0 END"


def _quoted(name: str) -> str:
    return f"`{name}`"


def _count_of(event_type: str) -> str:
    return f"SUM(CASE WHEN event_type = '{event_type}' THEN 1 ELSE 0 END){{over}}"


# Each window feature's Flink SQL aggregate over `EVENTS_VIEW` (cf. `detect.features`), with
# `{over}` after each aggregate call: empty in a window aggregation, ` OVER w` in a running
# one (a group's members, `members_query`). FILTER clauses are not allowed in OVER aggregates,
# hence the CASE forms.
FLINK_FEATURES: dict[str, str] = {
    "events": "COUNT(*){over}",
    "views": _count_of("view"),
    "carts": _count_of("cart"),
    "removes": _count_of("remove_from_cart"),
    "purchases": _count_of("purchase"),
    "distinct_products": "COUNT(DISTINCT product_id){over}",
    "distinct_categories": "COUNT(DISTINCT category_id){over}",
    "carted_products": ("COUNT(DISTINCT CASE WHEN event_type = 'cart' THEN product_id END){over}"),
    "distinct_sessions": "COUNT(DISTINCT user_session){over}",
    "distinct_users": "COUNT(DISTINCT user_id){over}",
    "distinct_ips": "COUNT(DISTINCT ip){over}",
    "distinct_user_agents": "COUNT(DISTINCT user_agent){over}",
    # Whole seconds: REES46 times have no fractions.
    "active_s": "CAST(MAX(t_s){over} - MIN(t_s){over} AS DOUBLE)",
    "ipv6": "MAX(CASE WHEN POSITION(':' IN ip) > 0 THEN 1 ELSE 0 END){over}",
    "declared_bot": "MAX(CASE WHEN agent_code >= 1 THEN 1 ELSE 0 END){over}",
    "search_engine": "MAX(CASE WHEN agent_code = 2 THEN 1 ELSE 0 END){over}",
    # Commerce events have no paths: 0, as on the embedded engine for the same input.
    "distinct_paths": "COUNT(DISTINCT CAST(NULL AS STRING)){over}",
    "claimed_crawler": f"MAX({_crawler_is(1)}){{over}}",
    "verified_crawler": f"MAX({_crawler_is(2)}){{over}}",
    "spoofed_crawler": f"MAX({_crawler_is(3)}){{over}}",
    # Over the rule's rows view (`rows_view`): the gap to the previous event and
    # whether a view's product id is above the previous event's, both within the window.
    "gap_cv": "COALESCE(STDDEV_POP(gap_s){over} / NULLIF(AVG(gap_s){over}, 0), 0)",
    "ascending_share": "COALESCE(AVG(ascending_step){over}, 0)",
    # Over the rule's rows view too: the key's events before the window (at the window's
    # first row, the least of each running count) and its earlier windows with events.
    "baseline": (
        "COALESCE(CAST(MIN(events_before){over} AS DOUBLE) "
        "/ NULLIF(MIN(windows_before){over}, 0), 0)"
    ),
    "baseline_funnel": (
        "COALESCE(CAST(MIN(funnel_before){over} AS DOUBLE) "
        "/ NULLIF(MIN(events_before){over}, 0), 0)"
    ),
    # Over the events view when a rule reads it: each row's IP first seen (`ip_first_s`).
    "ip_age_s": "COALESCE(MAX(t_s - ip_first_s){over}, 0)",
    # Over the events view's `popularity` when a rule reads it (the job's `Popularity`
    # operator: `product_popularity`, as the embedded detector runs it; null while unknown).
    "popularity": ("COALESCE(AVG(CASE WHEN event_type = 'view' THEN popularity END){over}, -1)"),
    "longtail_views": (
        f"SUM(CASE WHEN event_type = 'view' AND popularity < {LONG_TAIL} THEN 1 ELSE 0 END){{over}}"
    ),
    "longtail_share": (
        "COALESCE(AVG(CASE WHEN event_type = 'view' AND popularity IS NOT NULL THEN "
        f"CASE WHEN popularity < {LONG_TAIL} THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END "
        "END){over}, 0)"
    ),
}
ORDERED_FEATURES = {"gap_cv", "ascending_share"}
BASELINE_FEATURES = {"baseline", "baseline_funnel"}

WEB_ONLY = "a web-request feature: the Flink job reads commerce events, not web logs"

# A rule filter's columns (cf. `rules.FILTER_COLUMNS`); commerce events are no web requests.
FLINK_FILTER_COLUMNS: dict[str, str] = {
    "event_type": "event_type",
    "price": "price",
    "declared_bot": "CASE WHEN agent_code >= 1 THEN 1 ELSE 0 END",
    "search_engine": "CASE WHEN agent_code = 2 THEN 1 ELSE 0 END",
    "status": "CAST(NULL AS INT)",
    "web_request": "0",
    "static": "0",
    "verified_crawler": _crawler_is(2),
    "spoofed_crawler": _crawler_is(3),
}

# The entity a key names, as text (the alert's `entity`).
KEY_FLINK: dict[KeyKind, str] = {
    KeyKind.IP: "ip",
    # The events view's column (`job_dir.view_sql`): an IPv4 address's /24, an IPv6 address's
    # prefix (the job's UDF, `ip_prefix`).
    KeyKind.SUBNET: "subnet",
    KeyKind.USER: "CAST(user_id AS STRING)",
    KeyKind.SESSION: "user_session",
    KeyKind.USER_AGENT: "user_agent",
    KeyKind.PRODUCT: "CAST(product_id AS STRING)",
    KeyKind.CATEGORY: "CAST(category_id AS STRING)",
    KeyKind.GLOBAL: "'*'",
}


def step_ms(rule: Rule) -> int:
    """How often the rule is judged in event time: as the embedded engine's tick."""
    return max(1000, rule.window_s * 1000 // 60)


def unsupported(rule: Rule) -> str | None:
    """Why the rule does not compile for Flink, or None when it does."""
    members = rule.spec.members
    for feature in (*rule.features, *rule.member_features):
        if feature not in FLINK_FEATURES:
            return f"feature {feature!r} is {WEB_ONLY}"
    if members is not None and (ORDERED_FEATURES | BASELINE_FEATURES) & set(rule.member_features):
        return "a member condition reads an ordered or baseline feature, not compiled yet"
    if rule.spec.filter is not None:
        try:
            compile_condition(rule.spec.filter, names=FLINK_FILTER_COLUMNS, strings=True)
        except ValueError as exc:
            return f"filter: {exc}"
    if step_ms(rule) % 1000 or (rule.window_s * 1000) % step_ms(rule):
        return f"window {rule.spec.window} is not 60 steps of whole seconds (or 1-second steps)"
    return None


def interval(seconds: int) -> str:
    """A Flink SQL interval literal of whole seconds, in the largest unit that divides them."""
    for unit, size in (("HOUR", 3600), ("MINUTE", 60), ("SECOND", 1)):
        if seconds % size == 0:
            count = str(seconds // size)
            return f"INTERVAL '{count}' {unit}({max(2, len(count))})"
    raise AssertionError("unreachable: every whole number of seconds is seconds")


def _condition(text: str) -> str:
    names = {feature: f"CAST({_quoted(feature)} AS DOUBLE)" for feature in FLINK_FEATURES}
    sql, _ = compile_condition(text, names=names)
    return sql


def _rows_where(rule: Rule) -> str:
    """The rows a rule reads: a key, and its filter."""
    where = f"{KEY_FLINK[rule.spec.key]} IS NOT NULL"
    if rule.spec.filter is not None:
        row_filter, _ = compile_condition(
            rule.spec.filter, names=FLINK_FILTER_COLUMNS, strings=True
        )
        where += f" AND {row_filter}"
    return where


EPOCH_S = "TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', {})"


def _over(rule: Rule, frame: str) -> str:
    """An OVER window of the rule's key in event-time order (the whole stream when global)."""
    partition = (
        "" if rule.spec.key is KeyKind.GLOBAL else f"PARTITION BY {KEY_FLINK[rule.spec.key]} "
    )
    return f"({partition}ORDER BY event_time ROWS BETWEEN {frame} AND CURRENT ROW)"


def rows_view(rule: Rule, name: str) -> str:
    """A rule's rows with what the window features that look beyond one row need.

    For a baseline, running counts of the key's events, carts and purchases and windows
    before each row. For `gap_cv` and `ascending_share`, the previous row of the same key in
    the same window: its gap (`gap_s`) and, for a view, whether the product id went up
    (`ascending_step`). A ROWS frame of one preceding row gives each row its own predecessor;
    LAG would not here (Flink evaluates it over the RANGE frame: rows of one time would share
    one value). Flink computes one OVER window per query level, hence the nesting.
    """
    window = rule.window_s
    rows = f"""SELECT *, CASE WHEN event_type IN ('cart', 'purchase') THEN 1 ELSE 0 END AS funnel
    FROM {EVENTS_VIEW}
    WHERE {_rows_where(rule)}"""
    if BASELINE_FEATURES & set(rule.features):
        rows = f"""SELECT *, COUNT(*) OVER w - 1 AS events_before,
        SUM(funnel) OVER w - funnel AS funnel_before,
        COUNT(DISTINCT t_s / {window}) OVER w - 1 AS windows_before
    FROM ({rows})
    WINDOW w AS {_over(rule, "UNBOUNDED PRECEDING")}"""
    if ORDERED_FEATURES & set(rule.features):
        rows = f"""SELECT *,
        CASE WHEN in_window THEN CAST(t_s - prev_s AS DOUBLE) END AS gap_s,
        CASE WHEN event_type <> 'view' OR NOT in_window OR prev_product IS NULL
            THEN CAST(NULL AS DOUBLE) WHEN product_id > prev_product THEN 1.0 ELSE 0.0
        END AS ascending_step
    FROM (
        SELECT *, seen = 2 AND prev_s / {window} = t_s / {window} AS in_window
        FROM (
            SELECT *, {EPOCH_S.format("FIRST_VALUE(event_time) OVER w")} AS prev_s,
                FIRST_VALUE(product_id) OVER w AS prev_product, COUNT(*) OVER w AS seen
            FROM ({rows})
            WINDOW w AS {_over(rule, "1 PRECEDING")}
        )
    )"""
    return f"CREATE TEMPORARY VIEW {name} AS\n{rows}"


def _feature(name: str, over: str = "") -> str:
    """A feature's aggregate: over a window's rows, or (`over` " OVER w") running."""
    return FLINK_FEATURES[name].format(over=over)


def _evidence(features: tuple[str, ...]) -> str:
    return ", ".join(f"KEY '{f}' VALUE {_quoted(f)}" for f in features)


def rule_query(rule: Rule, table: str = EVENTS_VIEW) -> str:
    """The rule's matched steps over `table`: one row per (entity, window, step so far)
    meeting the condition, in the columns every rule's query shares (the job unions them)."""
    features = tuple(dict.fromkeys(("events", *rule.features)))
    key = KEY_FLINK[rule.spec.key]
    grouped = "" if rule.spec.key is KeyKind.GLOBAL else f"{key}, "
    aggregates = ",\n        ".join(f"{_feature(f)} AS {_quoted(f)}" for f in features)
    worse = _condition(rule.spec.escalate_when) if rule.spec.escalate_when else "FALSE"
    return f"""
SELECT '{rule.name}' AS rule, entity, window_start, window_time, first_seen, last_seen,
    `events`, JSON_OBJECT({_evidence(features)}) AS evidence, COALESCE({worse}, FALSE) AS worse
FROM (
    SELECT {key} AS entity, window_start, window_end, window_time,
        MIN(event_time) AS first_seen, MAX(event_time) AS last_seen,
        {aggregates}
    FROM TABLE(CUMULATE(TABLE {table}, DESCRIPTOR(event_time),
        {interval(step_ms(rule) // 1000)}, {interval(rule.window_s)}))
    WHERE {_rows_where(rule)}
    GROUP BY {grouped}window_start, window_end, window_time
)
WHERE {_condition(rule.spec.condition)}"""


def members_query(rule: Rule, table: str = EVENTS_VIEW) -> str:
    """A group rule's members as they go: for each row of the rule's rows, its member's
    features so far in the member window (a running aggregate per group, member and member
    window, rows of one time together) and whether they meet the member condition (`meets`).

    Only rows that meet it, or that end a run of rows that did, leave the query: the job keeps
    each member's latest such row and, at a step where the group matched, counts the members
    whose latest row before the step meets the condition (`pyflink_job.Grouping`). So the
    cost follows the rows, not the members times the steps (a CUMULATE window per member
    emits every member at every step of the group's)."""
    members = rule.spec.members
    assert members is not None
    features = tuple(dict.fromkeys(("events", *rule.member_features)))
    window = rule.members_window_s
    running = ",\n            ".join(f"{_feature(f, ' OVER w')} AS {_quoted(f)}" for f in features)
    group, member = KEY_FLINK[rule.spec.key], KEY_FLINK[members.key]
    return f"""
SELECT rule, group_entity, member_entity,
    CAST(member_window AS BIGINT) * {window * 1000} AS member_window_ms,
    event_time, first_seen, last_seen, `events`, evidence, meets
FROM (
    SELECT *, FIRST_VALUE(meets) OVER p AS previous_meets, COUNT(*) OVER p AS seen
    FROM (
        SELECT '{rule.name}' AS rule, group_entity, member_entity, member_window, event_time,
            first_seen, last_seen, `events`, JSON_OBJECT({_evidence(features)}) AS evidence,
            COALESCE({_condition(members.condition)}, FALSE) AS meets
        FROM (
            SELECT group_entity, member_entity, member_window, event_time,
                MIN(event_time) OVER w AS first_seen, MAX(event_time) OVER w AS last_seen,
                {running}
            FROM (
                SELECT *, {group} AS group_entity, {member} AS member_entity,
                    t_s / {window} AS member_window
                FROM {table}
                WHERE {_rows_where(rule)} AND {member} IS NOT NULL
            )
            WINDOW w AS (PARTITION BY group_entity, member_entity, member_window
                ORDER BY event_time RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        )
    )
    WINDOW p AS (PARTITION BY group_entity, member_entity, member_window
        ORDER BY event_time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE meets OR (seen = 2 AND previous_meets)"""


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    query: str  # `rule_query`: the matched steps
    views: tuple[str, ...] = ()  # statements the query needs run first
    members: str | None = None  # a group rule's `members_query`

    @property
    def keys(self) -> set[KeyKind]:
        """The kinds of key the rule groups by (its own, its members')."""
        members = self.rule.spec.members
        return {self.rule.spec.key, *([members.key] if members is not None else [])}

    @property
    def sql(self) -> str:
        """All the SQL the rule runs (what the job's view must provide is read from it)."""
        return "\n".join((*self.views, self.query, self.members or ""))

    def to_json(self) -> dict[str, object]:
        """What the job needs to turn the rule's matched steps into alerts."""
        spec = self.rule.spec
        return {
            "name": self.rule.name,
            "kind": spec.key.value,
            "severity": spec.severity.value,
            "escalate_to": spec.escalate_to.value if spec.escalate_to else None,
            "cooldown_s": self.rule.cooldown_s,
            "retention_s": self.rule.retention_s,
            "labels": list(spec.labels),
            "explanation": explanation_template(self.rule),
            "views": list(self.views),
            "query": self.query,
            "evidence": ["events", *self.rule.features],
            "members": self._members(),
        }

    def _members(self) -> dict[str, object] | None:
        members = self.rule.spec.members
        if members is None:
            return None
        return {
            "kind": members.key.value,
            "min": members.min,
            "min_share": members.min_share,
            "window_s": self.rule.members_window_s,
            "query": self.members,
            "evidence": ["events", *self.rule.member_features],
            "explanation": member_explanation_template(self.rule),
        }


def flink_rule(rule: Rule, number: int) -> CompiledRule:
    """A rule that compiles (`unsupported` is None), the job's `number`th."""
    members = members_query(rule) if rule.spec.members is not None else None
    if not (ORDERED_FEATURES | BASELINE_FEATURES) & set(rule.features):
        return CompiledRule(rule, rule_query(rule), members=members)
    name = f"{EVENTS_VIEW}_{number}"
    return CompiledRule(rule, rule_query(rule, name), (rows_view(rule, name),), members)


def compile_rules(rules: list[Rule]) -> tuple[list[CompiledRule], dict[str, str]]:
    """The rules that compile, and for each that does not, why."""
    compiled: list[CompiledRule] = []
    skipped: dict[str, str] = {}
    for rule in rules:
        reason = unsupported(rule)
        if reason is None:
            compiled.append(flink_rule(rule, len(compiled)))
        else:
            skipped[rule.name] = reason
    return compiled, skipped
