"""The SQL that computes window features per key over the detector's kept events.

Windows are tumbling and aligned to the epoch; a rule's features are aggregates over the events
of one key in one window (`features.FEATURES`), with the columns some of them need: the gap to
the key's previous event (`gap_cv`), whether a view's product id is above the previous
event's (`ascending_share`), the IP's first sighting (`ip_age_s`) and the key's earlier
windows (`baseline`, `baseline_funnel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from ecomwatch.detect.features import CHEAP_FEATURES, FEATURES, is_event
from ecomwatch.detect.rules import KeyKind, Rule

# What events are grouped by (integer keys where there are: `entity_keys`)...
KEY_SQL: dict[KeyKind, str] = {
    KeyKind.IP: "ip_key",
    KeyKind.SUBNET: "subnet_key",
    KeyKind.USER: "user_id",
    KeyKind.SESSION: "user_session",
    KeyKind.USER_AGENT: "agent_key",
    KeyKind.PRODUCT: "product_id",
    KeyKind.CATEGORY: "category_id",
    KeyKind.GLOBAL: "'*'",
}
# ...and their types (a round's matches carry keys as text: its queries are one union).
KEY_TYPE: dict[KeyKind, pa.DataType] = {
    KeyKind.IP: pa.uint64(),
    KeyKind.SUBNET: pa.uint64(),
    KeyKind.USER: pa.int64(),
    KeyKind.SESSION: pa.string(),
    KeyKind.USER_AGENT: pa.uint64(),
    KeyKind.PRODUCT: pa.int64(),
    KeyKind.CATEGORY: pa.int64(),
    KeyKind.GLOBAL: pa.string(),
}
# ...and the entity's name in alerts, an aggregate over the group's events.
NAME_SQL: dict[KeyKind, str] = {
    KeyKind.IP: "any_value(ip)",
    # IPv6: the prefix's text is computed in Python, once per group (`entity_keys`).
    KeyKind.SUBNET: (
        r"CASE WHEN contains(CAST(any_value(ip) AS VARCHAR), ':') "
        r"THEN ipv6_prefix(CAST(any_value(ip) AS VARCHAR)) "
        r"ELSE regexp_replace(any_value(ip), '\.\d+$', '.0/24') END"
    ),
    KeyKind.USER: "CAST(any_value(user_id) AS VARCHAR)",
    KeyKind.SESSION: "any_value(user_session)",
    KeyKind.USER_AGENT: "any_value(user_agent)",
    KeyKind.PRODUCT: "CAST(any_value(product_id) AS VARCHAR)",
    KeyKind.CATEGORY: "CAST(any_value(category_id) AS VARCHAR)",
    KeyKind.GLOBAL: "'*'",
}


# A window's first and last event times, from the integer microseconds (aggregating the
# timestamps themselves cost more per row).
FIRST_SEEN = "make_timestamp(min(t_us))::TIMESTAMPTZ"
LAST_SEEN = "make_timestamp(max(t_us))::TIMESTAMPTZ"


def sql_text(text: str) -> str:
    """A string literal."""
    return "'" + text.replace("'", "''") + "'"


def window_start_sql(window_us: int) -> str:
    """The start (epoch microseconds) of the tumbling window an event falls in."""
    return f"(t_us // {window_us} * {window_us})"


def aggregate_sql(
    rule: Rule,
    kinds: tuple[KeyKind, ...],
    window_us: int,
    features: tuple[str, ...],
    where: str,
    *,
    names: bool = True,
) -> str:
    """Features per (keys…, window) over the kept events that match `where` and the filter.

    Keys are returned as key0, key1… (the last one is the judged key) and, with `names`, the
    entities' names as name0, name1….
    """
    keys = tuple(KEY_SQL[kind] for kind in kinds)
    start = window_start_sql(window_us)
    # A global key is a constant: selected once per group, not grouped by (DuckDB would
    # compress the string on every row).
    constant = {i for i, kind in enumerate(kinds) if kind is KeyKind.GLOBAL}
    named = "".join(f"{k} AS key{i}, " for i, k in enumerate(keys) if i not in constant)
    group_keys = "".join(f"key{i}, " for i in range(len(keys)) if i not in constant)
    key_columns = ", ".join(
        f"{keys[i]} AS key{i}" if i in constant else f"key{i}" for i in range(len(keys))
    )
    name_columns = "".join(
        f"{NAME_SQL[kind]} AS name{i}, " for i, kind in enumerate(kinds) if names
    )
    wanted = dict.fromkeys(("events", *features))
    baseline = [name for name in ("baseline", "baseline_funnel") if name in wanted]
    # One IP per group: its age is that of its last event, joined per group, not per row.
    ip_age_after = "ip_age_s" in wanted and kinds[-1] is KeyKind.IP
    later = [*baseline, *(["ip_age_s"] if ip_age_after else [])]
    aggregates = ",\n".join(
        f"{FEATURES[name][0]} AS {name}" for name in wanted if name not in later
    )
    extra, joins = [], []
    in_order = f"OVER (PARTITION BY {', '.join(keys)}, {start} ORDER BY e.t_us, e.seq)"
    if "gap_cv" in wanted:
        extra.append(f"e.t_us / 1e6 - lag(e.t_us / 1e6) {in_order} AS gap_s")
    if "ascending_share" in wanted:
        previous = f"lag(e.product_id) {in_order}"
        extra.append(
            f"CASE WHEN NOT e.{is_event('view')} OR {previous} IS NULL THEN NULL "
            f"WHEN e.product_id > {previous} THEN 1.0 ELSE 0.0 END AS ascending_step"
        )
    if "ip_age_s" in wanted and not ip_age_after:
        joins.append("LEFT JOIN ip_seen s ON s.seen_key = e.ip_key")
        extra.append("e.t_us / 1e6 - s.first_us / 1e6 AS ip_age_s")
    if baseline:
        aggregates += f",\ncount(*) FILTER ({is_event('cart', 'purchase')}) AS funnel_events"
    more = "".join(", " + x for x in extra)
    grouped = f"""
        WITH rows AS (
            SELECT e.*, {named}{start} AS window_us {more}
            FROM events e {" ".join(joins)}
            WHERE ({where}) AND {rule.filter_sql} AND {keys[-1]} IS NOT NULL)
        SELECT {key_columns}, window_us, {name_columns}{FIRST_SEEN} AS first_seen,
               {LAST_SEEN} AS last_seen, max(seq) AS newest_seq, {aggregates}
        FROM rows GROUP BY {group_keys}window_us"""
    if ip_age_after:
        grouped = f"""
        SELECT g.*, coalesce(epoch(g.last_seen) - s.first_us / 1e6, 0) AS ip_age_s
        FROM ({grouped}) g LEFT JOIN ip_seen s ON s.seen_key = g.key{len(keys) - 1}"""
    if not baseline:
        return grouped
    # The key's earlier windows: those closed before (state) and those before this one here.
    judged = f"key{len(keys) - 1}"
    earlier_events = "coalesce(b.events, 0) + coalesce(sum(g.events) OVER earlier, 0)"
    return f"""
        SELECT g.*,
            coalesce(({earlier_events}) / NULLIF(coalesce(b.windows, 0)
                + count(*) OVER earlier, 0), 0) AS baseline,
            coalesce((coalesce(b.funnel, 0) + coalesce(sum(g.funnel_events) OVER earlier, 0))
                / NULLIF({earlier_events}, 0), 0) AS baseline_funnel
        FROM ({grouped}) g LEFT JOIN baselines b
            ON b.rule = {sql_text(rule.name)} AND b.key = CAST(g.{judged} AS VARCHAR)
        WINDOW earlier AS (PARTITION BY g.{judged} ORDER BY g.window_us
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"""


def holding_sql(
    rule: Rule, window_us: int, first_us: int, row_sql: str | None, least: int = 1
) -> str:
    """` AND …`: the rows of windows (from `first_us` on) that hold `least` rows the rule
    looks at meeting `row_sql` (nothing when None). A rule whose condition needs such rows
    (`Rule.needed_row_sql`, `needed_row_count`) aggregates only those windows: a probe rule
    skips every window of ordinary traffic after one cheap scan, `distributed-hoarding` every
    product with fewer than 15 carts."""
    if row_sql is None:
        return ""
    return _holding(rule, (rule.spec.key,), window_us, first_us, row_sql, least)


def needed_holding_sql(rule: Rule, window_us: int, first_us: int) -> str:
    """`holding_sql` of the rows the rule's condition needs."""
    return holding_sql(rule, window_us, first_us, rule.needed_row_sql, rule.needed_row_count)


def members_holding_sql(rule: Rule, window_us: int, first_us: int) -> str:
    """` AND …`: the rows of the (group, member, window)s that hold the rows every member of
    a group rule holds, as many as it needs (`Rule.members_need`; nothing when it needs
    none): `long-tail-swarm` aggregates the IPs with three long-tail views, not every IP."""
    if rule.members_need is None or rule.spec.members is None:
        return ""
    row_sql, least = rule.members_need
    kinds = (rule.spec.key, rule.spec.members.key)
    return _holding(rule, kinds, window_us, first_us, row_sql, least)


def _holding(
    rule: Rule,
    kinds: tuple[KeyKind, ...],
    window_us: int,
    first_us: int,
    row_sql: str,
    least: int,
) -> str:
    """` AND …`: the rows of the (keys…, window)s holding at least `least` rows the rule looks
    at that meet `row_sql`."""
    keys = ", ".join(KEY_SQL[kind] for kind in kinds)
    window = f"hash({keys}, {window_start_sql(window_us)})"
    rows = f"FROM events WHERE t_us >= {first_us} AND {rule.filter_sql} AND ({row_sql})"
    holding = (
        f"SELECT {window} {rows}"
        if least == 1
        else f"SELECT {window} AS h {rows} GROUP BY h HAVING count(*) >= {least}"
    )
    return f" AND {window} IN ({holding})"


def candidates_sql(rule: Rule, number: int, first_us: int, last_seq: int) -> str:
    """(number, hash of key and window) of the rule's windows from `first_us` on that hold rows
    newer than batch `last_seq` and meet the condition's cheap part (`Rule.screens`)."""
    window_us = rule.window_s * 1_000_000
    where = f"t_us >= {first_us}" + needed_holding_sql(rule, window_us, first_us)
    cheap = aggregate_sql(
        rule, (rule.spec.key,), window_us, rule.prefilter_features, where, names=False
    )
    return (
        f"SELECT {number} AS rule, hash(key0, window_us) AS h FROM ({cheap}) "
        f"WHERE newest_seq > {last_seq} AND {rule.prefilter_sql}"
    )


@dataclass(frozen=True)
class Judging:
    """A rule's part of a judging round: its number in the round's union, the start of its
    first window with events not judged yet, the last batch it judged, whether screening
    registered `candidates` for it."""

    rule: Rule
    number: int
    first_us: int
    last_seq: int
    screened: bool = False


def aggregation_key(rule: Rule) -> tuple[str, int, str]:
    """Rules with the same key, window and filter aggregate the same rows the same way."""
    return (rule.spec.key.value, rule.window_s, rule.filter_sql)


def _shared_where(group: Sequence[Judging], window_us: int) -> str:
    """The rows a group's shared aggregation reads: from the first window any of its rules
    judges, only the windows holding rows one of them needs when each needs some (as many as
    the one needing fewest: a window meeting any condition holds at least that many)."""
    rule = group[0].rule
    first_us = min(j.first_us for j in group)
    needed = [j.rule.needed_row_sql for j in group]
    where = f"t_us >= {first_us}"
    if all(row is not None for row in needed):
        either = " OR ".join(f"({row})" for row in dict.fromkeys(needed))
        least = min(j.rule.needed_row_count for j in group)
        where += holding_sql(rule, window_us, first_us, either, least)
    return where


# A rule whose condition counts at least one row per this many seconds of its window (`views
# >= 60` a minute) is screened by that count alone (`counted_candidates_sql`).
DENSE_NEED_S = 10


def counts_alone(rule: Rule) -> bool:
    """Whether the rule's windows are screened by the rows its condition counts alone: when
    it needs them densely (`DENSE_NEED_S`), few windows of ordinary traffic hold that many,
    and counting one kind of row per window costs far less than aggregating every cheap
    feature of every window (a million rows, IP and minute: 100-121 → 66-71 ms)."""
    need = rule.round_need
    return rule.screens and need is not None and need[1] * DENSE_NEED_S >= rule.window_s


def counted_candidates_sql(j: Judging) -> str:
    """`candidates_sql` of a rule screened by its counted rows alone (`counts_alone`): the
    windows from `first_us` on that hold as many as the condition needs. It lets more windows
    through than the cheap part would (those without rows newer than the last round, those
    failing its other conjuncts): the match query judges them on the whole condition."""
    assert j.rule.round_need is not None
    row_sql, least = j.rule.round_need
    key = KEY_SQL[j.rule.spec.key]
    start = window_start_sql(j.rule.window_s * 1_000_000)
    return (
        f"SELECT {j.number} AS rule, hash({key}, {start}) AS h FROM events "
        f"WHERE t_us >= {j.first_us} AND {j.rule.filter_sql} AND {key} IS NOT NULL "
        f"AND ({row_sql}) GROUP BY {key}, {start} HAVING count(*) >= {least}"
    )


def shared_candidates_sql(group: Sequence[Judging]) -> str:
    """`candidates_sql` of rules with the same aggregation key, from one aggregation of all
    their cheap features (each rule screened by its counted rows alone in its own pass)."""
    parts = [counted_candidates_sql(j) for j in group if counts_alone(j.rule)]
    rest = [j for j in group if not counts_alone(j.rule)]
    if rest:
        parts.append(_shared_candidates_sql(rest))
    return " UNION ALL ".join(f"({part})" for part in parts)


def _shared_candidates_sql(group: Sequence[Judging]) -> str:
    if len(group) == 1:
        j = group[0]
        return candidates_sql(j.rule, j.number, j.first_us, j.last_seq)
    rule = group[0].rule
    window_us = rule.window_s * 1_000_000
    features = tuple(dict.fromkeys(f for j in group for f in j.rule.prefilter_features))
    where = _shared_where(group, window_us)
    cheap = aggregate_sql(rule, (rule.spec.key,), window_us, features, where, names=False)
    selects = " UNION ALL ".join(
        f"(SELECT {j.number} AS rule, hash(key0, window_us) AS h FROM cheap "
        f"WHERE window_us >= {j.first_us} AND newest_seq > {j.last_seq} "
        f"AND {j.rule.prefilter_sql})"
        for j in group
    )
    return f"WITH cheap AS MATERIALIZED ({cheap}) {selects}"


def round_matches_sql(judged: Sequence[Judging]) -> str:
    """One query for the matches of every rule of a round (`matches_sql`'s columns). Rules
    that aggregate the same rows the same way (key, window and filter alike, all screened or
    none; no baseline) share one aggregation of all their features (`shared_matches_sql`): a
    dozen web rules per IP and 10 minutes cost one pass over the events, not twelve."""
    alike: dict[tuple[bool, str, int, str], list[Judging]] = {}
    parts = []
    for j in judged:
        if {"baseline", "baseline_funnel"} & set(j.rule.features):
            parts.append(matches_sql(j.rule, j.number, j.first_us, j.last_seq,
                                     screened=j.screened))  # fmt: skip
        else:
            alike.setdefault((j.screened, *aggregation_key(j.rule)), []).append(j)
    for group in alike.values():
        if len(group) == 1:
            j = group[0]
            parts.append(matches_sql(j.rule, j.number, j.first_us, j.last_seq,
                                     screened=j.screened))  # fmt: skip
        else:
            parts.append(shared_matches_sql(group))
    return " UNION ALL BY NAME ".join(f"({part})" for part in parts)


def shared_matches_sql(group: Sequence[Judging]) -> str:
    """The matches of rules with the same key, window and filter: every feature any of them
    reads, aggregated once from the earliest window any of them judges; then each rule's own
    windows, new rows and condition. Screened rules (all of the group or none) aggregate the
    windows any of them let through, each judging its own: `low-and-slow-scraper`'s gaps and
    `catalogue-walk`'s steps in one ordering of the rows."""
    rule = group[0].rule
    window_us = rule.window_s * 1_000_000
    features = tuple(dict.fromkeys(f for j in group for f in j.rule.window_features))
    screened = group[0].screened
    if screened:
        start = window_start_sql(window_us)
        where = (
            f"t_us >= {min(j.first_us for j in group)} AND hash({KEY_SQL[rule.spec.key]}, "
            f"{start}) IN {_candidates(*(j.number for j in group))}"
        )
    else:
        where = _shared_where(group, window_us)
    shared = aggregate_sql(rule, (rule.spec.key,), window_us, features, where)
    selects = " UNION ALL BY NAME ".join(
        f"(SELECT {j.number} AS rule, * REPLACE (CAST(key0 AS VARCHAR) AS key0), "
        f"({j.rule.escalate_sql or 'FALSE'}) AS worse FROM shared "
        f"WHERE window_us >= {j.first_us} AND newest_seq > {j.last_seq} "
        + (f"AND hash(key0, window_us) IN {_candidates(j.number)} " if screened else "")
        + f"AND {j.rule.condition_sql})"
        for j in group
    )
    return f"WITH shared AS MATERIALIZED ({shared}) {selects}"


def matches_sql(rule: Rule, number: int, first_us: int, last_seq: int, *, screened: bool) -> str:
    """The rule's windows from `first_us` on that hold rows newer than batch `last_seq` and meet
    its condition, with every feature, `worse` (the escalation holds) and `rule` (`number`);
    keys as text (key0). When `screened`, only the windows in `candidates` are computed."""
    window_us = rule.window_s * 1_000_000
    where, judged = f"t_us >= {first_us}", f"newest_seq > {last_seq}"
    if screened:
        # One hash per (key, window): a semi-join on one column is far cheaper than on two; a
        # collision only adds a window that the condition then judges as any other.
        mine = _candidates(number)
        start = window_start_sql(window_us)
        where += f" AND hash({KEY_SQL[rule.spec.key]}, {start}) IN {mine}"
        judged += f" AND hash(key0, window_us) IN {mine}"
    else:
        where += needed_holding_sql(rule, window_us, first_us)
    if _baseline_screens(rule):
        return _baseline_matches_sql(rule, number, where, judged)
    features = aggregate_sql(rule, (rule.spec.key,), window_us, rule.window_features, where)
    return (
        f"SELECT {number} AS rule, * REPLACE (CAST(key0 AS VARCHAR) AS key0), "
        f"({rule.escalate_sql or 'FALSE'}) AS worse "
        f"FROM ({features}) WHERE {judged} AND {rule.condition_sql}"
    )


def _candidates(*numbers: int) -> str:
    """The (key, window) hashes screening let through for the rules `numbers`, a subquery."""
    return f"(SELECT h FROM candidates WHERE rule IN ({', '.join(map(str, numbers))}))"


def _baseline_screens(rule: Rule) -> bool:
    """Whether a rule with a baseline computes its costly features (distinct counts, timing)
    only for the windows that pass the condition's cheap part, the baseline included: every
    window is still aggregated (the baseline averages them all), but cheaply."""
    features = set(rule.window_features)
    return (
        bool({"baseline", "baseline_funnel"} & features)
        and bool(features - CHEAP_FEATURES)
        and rule.prefilter_sql != "TRUE"
    )


def _baseline_matches_sql(rule: Rule, number: int, where: str, judged: str) -> str:
    """`matches_sql` of a rule with a baseline and costly features (`_baseline_screens`): the
    cheap features and the baseline of every window, the costly ones of those that pass the
    cheap part (a category's distinct IPs only in the windows with a surge of views)."""
    window_us = rule.window_s * 1_000_000
    kinds = (rule.spec.key,)
    cheap = tuple(f for f in rule.window_features if f in CHEAP_FEATURES)
    costly = tuple(f for f in rule.window_features if f not in CHEAP_FEATURES)
    passing = f"SELECT hash(key0, window_us) FROM cheap WHERE {judged} AND {rule.prefilter_sql}"
    costly_where = (
        f"{where} AND hash({KEY_SQL[rule.spec.key]}, {window_start_sql(window_us)}) IN ({passing})"
    )
    costly_sql = aggregate_sql(rule, kinds, window_us, costly, costly_where, names=False)
    picked = ", ".join(f"k.{name}" for name in costly)
    return (
        f"WITH cheap AS MATERIALIZED ({aggregate_sql(rule, kinds, window_us, cheap, where)}) "
        f"SELECT {number} AS rule, * REPLACE (CAST(key0 AS VARCHAR) AS key0), "
        f"({rule.escalate_sql or 'FALSE'}) AS worse FROM ("
        f"SELECT c.*, {picked} FROM cheap c JOIN ({costly_sql}) k "
        f"ON k.key0 = c.key0 AND k.window_us = c.window_us"
        f") WHERE {judged} AND {rule.condition_sql}"
    )


@dataclass(frozen=True)
class Closing:
    """A baseline rule's part of closing windows: its number in the query, the end of the last
    window it already closed."""

    rule: Rule
    number: int
    done_us: int


def closing_sql(closing: Sequence[Closing], watermark_us: int) -> str:
    """(rule number, key as text, events, funnel events) of each window the watermark has
    closed since each rule's last closing. Rules with the same key and filter whose windows are
    multiples of the shortest (`flood`'s 10 s, `traffic-surge`'s minute) aggregate the rows once,
    per shortest window, and sum those per window of their own; a global key is not grouped by
    (a constant key costs a string per row)."""
    families: list[list[Closing]] = []
    for c in sorted(closing, key=lambda c: c.rule.window_s):
        family = next((f for f in families if _rolls_up(f[0].rule, c.rule)), None)
        if family is None:
            families.append([c])
        else:
            family.append(c)
    ctes, selects = [], []
    for n, family in enumerate(families):
        rule = family[0].rule
        shortest = rule.window_s * 1_000_000
        is_global = rule.spec.key is KeyKind.GLOBAL
        key = KEY_SQL[rule.spec.key]
        lower = min(c.done_us - c.rule.window_s * 1_000_000 for c in family)
        ctes.append(
            f"closing{n} AS (SELECT {'' if is_global else f'{key} AS key, '}"
            f"{window_start_sql(shortest)} AS w, count(*) AS n, "
            f"count(*) FILTER ({is_event('cart', 'purchase')}) AS funnel FROM events "
            f"WHERE t_us >= {lower} AND t_us < {watermark_us} AND {key} IS NOT NULL "
            f"AND {rule.filter_sql} GROUP BY ALL)"
        )
        for c in family:
            window_us = c.rule.window_s * 1_000_000
            start = f"(w // {window_us} * {window_us})"
            text = sql_text("*") if is_global else "CAST(key AS VARCHAR)"
            selects.append(
                f"SELECT {c.number} AS rule, {text} AS key, CAST(sum(n) AS BIGINT) AS n, "
                f"CAST(sum(funnel) AS BIGINT) AS funnel "
                f"FROM closing{n} WHERE {start} + {window_us} <= {watermark_us} "
                f"AND {start} + {window_us} > {c.done_us} "
                f"GROUP BY {'' if is_global else 'key, '}{start}"
            )
    return f"WITH {', '.join(ctes)} " + " UNION ALL ".join(selects)


def _rolls_up(shortest: Rule, rule: Rule) -> bool:
    """Whether `rule`'s windows are sums of `shortest`'s: the same key and filter, a multiple
    of its window."""
    return (rule.spec.key, rule.filter_sql) == (
        shortest.spec.key,
        shortest.filter_sql,
    ) and rule.window_s % shortest.window_s == 0
