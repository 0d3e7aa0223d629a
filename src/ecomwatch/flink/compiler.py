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

from ecomwatch.detect.alerting import explanation_template
from ecomwatch.detect.rules import KeyKind, Rule, compile_condition

# The view the rules read: the source's events with the columns features need
# (`agent_code`: 0 a browser, 1 a declared bot, 2 a search engine, from the job's UDF).
EVENTS_VIEW = "rule_events"


def _quoted(name: str) -> str:
    return f"`{name}`"


def _count_of(event_type: str) -> str:
    return f"COUNT(*) FILTER (WHERE event_type = '{event_type}')"


# Each window feature's Flink SQL aggregate over `EVENTS_VIEW` (cf. `detect.features`).
FLINK_FEATURES: dict[str, str] = {
    "events": "COUNT(*)",
    "views": _count_of("view"),
    "carts": _count_of("cart"),
    "removes": _count_of("remove_from_cart"),
    "purchases": _count_of("purchase"),
    "distinct_products": "COUNT(DISTINCT product_id)",
    "distinct_categories": "COUNT(DISTINCT category_id)",
    "carted_products": "COUNT(DISTINCT product_id) FILTER (WHERE event_type = 'cart')",
    "distinct_sessions": "COUNT(DISTINCT user_session)",
    "distinct_users": "COUNT(DISTINCT user_id)",
    "distinct_ips": "COUNT(DISTINCT ip)",
    "distinct_user_agents": "COUNT(DISTINCT user_agent)",
    # Whole seconds: REES46 times have no fractions.
    "active_s": "CAST(TIMESTAMPDIFF(SECOND, MIN(event_time), MAX(event_time)) AS DOUBLE)",
    "ipv6": "MAX(CASE WHEN POSITION(':' IN ip) > 0 THEN 1 ELSE 0 END)",
    "declared_bot": "MAX(CASE WHEN agent_code >= 1 THEN 1 ELSE 0 END)",
    "search_engine": "MAX(CASE WHEN agent_code = 2 THEN 1 ELSE 0 END)",
    # Commerce events have no paths: 0, as on the embedded engine for the same input.
    "distinct_paths": "COUNT(DISTINCT CAST(NULL AS STRING))",
}

# Why the features without a Flink form have none yet.
NOT_YET: dict[str, str] = {
    "gap_cv": "needs the gap to the key's previous event (an ordered LAG per key and window)",
    "ascending_share": "needs the previous view's product (an ordered LAG per key and window)",
    "baseline": "needs the key's earlier windows joined to the current one",
    "baseline_funnel": "needs the key's earlier windows joined to the current one",
    "ip_age_s": "needs the IP's first sighting (24 h keyed state)",
    "claimed_crawler": "needs the crawler address ranges as a UDF",
    "verified_crawler": "needs the crawler address ranges as a UDF",
    "spoofed_crawler": "needs the crawler address ranges as a UDF",
}
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
}

# The entity a key names, as text (the alert's `entity`).
KEY_FLINK: dict[KeyKind, str] = {
    KeyKind.IP: "ip",
    KeyKind.USER: "CAST(user_id AS STRING)",
    KeyKind.SESSION: "user_session",
    KeyKind.USER_AGENT: "user_agent",
    KeyKind.PRODUCT: "CAST(product_id AS STRING)",
    KeyKind.GLOBAL: "'*'",
}


def step_ms(rule: Rule) -> int:
    """How often the rule is judged in event time: as the embedded engine's tick."""
    return max(1000, rule.window_s * 1000 // 60)


def unsupported(rule: Rule) -> str | None:
    """Why the rule does not compile for Flink, or None when it does."""
    if rule.spec.members is not None:
        return "group rules (members) are not compiled for Flink yet"
    if rule.spec.key not in KEY_FLINK:
        return f"key {rule.spec.key.value!r} needs the IPv6-prefix UDF, not written yet"
    for feature in rule.features:
        if feature in NOT_YET:
            return f"feature {feature!r} {NOT_YET[feature]}"
        if feature not in FLINK_FEATURES:
            return f"feature {feature!r} is {WEB_ONLY}"
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


def rule_query(rule: Rule) -> str:
    """The rule's matched steps: one row per (entity, window, step so far) meeting the
    condition, in the columns every rule's query shares (the job unions them)."""
    features = tuple(dict.fromkeys(("events", *rule.features)))
    key = KEY_FLINK[rule.spec.key]
    where = f"{key} IS NOT NULL"
    if rule.spec.filter is not None:
        row_filter, _ = compile_condition(
            rule.spec.filter, names=FLINK_FILTER_COLUMNS, strings=True
        )
        where += f" AND {row_filter}"
    aggregates = ",\n        ".join(f"{FLINK_FEATURES[f]} AS {_quoted(f)}" for f in features)
    evidence = ", ".join(f"KEY '{f}' VALUE {_quoted(f)}" for f in features)
    worse = _condition(rule.spec.escalate_when) if rule.spec.escalate_when else "FALSE"
    return f"""
SELECT '{rule.name}' AS rule, entity, window_start, first_seen, last_seen, `events`,
    JSON_OBJECT({evidence}) AS evidence, COALESCE({worse}, FALSE) AS worse
FROM (
    SELECT {key} AS entity, window_start, window_end,
        MIN(event_time) AS first_seen, MAX(event_time) AS last_seen,
        {aggregates}
    FROM TABLE(CUMULATE(TABLE {EVENTS_VIEW}, DESCRIPTOR(event_time),
        {interval(step_ms(rule) // 1000)}, {interval(rule.window_s)}))
    WHERE {where}
    GROUP BY {key}, window_start, window_end
)
WHERE {_condition(rule.spec.condition)}"""


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    query: str

    def to_json(self) -> dict[str, object]:
        """What the job needs to turn the rule's matched steps into alerts."""
        spec = self.rule.spec
        return {
            "name": self.rule.name,
            "kind": spec.key.value,
            "severity": spec.severity.value,
            "escalate_to": spec.escalate_to.value if spec.escalate_to else None,
            "cooldown_s": self.rule.cooldown_s,
            "labels": list(spec.labels),
            "explanation": explanation_template(self.rule),
            "query": self.query,
        }


def compile_rules(rules: list[Rule]) -> tuple[list[CompiledRule], dict[str, str]]:
    """The rules that compile, and for each that does not, why."""
    compiled: list[CompiledRule] = []
    skipped: dict[str, str] = {}
    for rule in rules:
        reason = unsupported(rule)
        if reason is None:
            compiled.append(CompiledRule(rule, rule_query(rule)))
        else:
            skipped[rule.name] = reason
    return compiled, skipped
