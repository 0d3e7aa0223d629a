"""Rules as data: strict validation with errors that name the file, the rule and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecomwatch.detect.rules import RuleError, compile_condition, load_rules, prefilter

GOOD = """
[[rule]]
name = "many-views"
key = "ip"
window = "5m"
condition = "views > 100 and distinct_products / views >= 0.5"
severity = "medium"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_defaults_load_and_compile_to_sql():
    rules = {r.name: r for r in load_rules()}
    assert {"fast-scraper", "declared-bot", "cart-abuse", "traffic-surge"} <= set(rules)
    assert "NULLIF" in rules["fast-scraper"].condition_sql
    assert rules["fast-scraper"].window_s == 60


def test_user_file_adds_and_overrides_by_name(tmp_path):
    override = GOOD.replace("many-views", "fast-scraper")
    rules = {r.name: r for r in load_rules([write(tmp_path, override)])}
    assert rules["fast-scraper"].spec.window == "5m"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('severity = "medium"', "field severity"),
        ('window = "5m"', "field window"),
        ('key = "ip"', "field key"),
    ],
)
def test_bad_fields_are_named(tmp_path, change, message):
    bad = {
        'severity = "medium"': 'severity = "urgent"',
        'window = "5m"': 'window = "five minutes"',
        'key = "ip"': 'key = "mac"',
    }[change]
    path = write(tmp_path, GOOD.replace(change, bad))
    with pytest.raises(RuleError) as error:
        load_rules([path])
    assert str(path) in str(error.value) and "many-views" in str(error.value)
    assert message in str(error.value)


def test_unknown_field_and_bad_expressions_are_errors(tmp_path):
    with pytest.raises(RuleError, match="field colour"):
        load_rules([write(tmp_path, GOOD + 'colour = "red"\n')])
    with pytest.raises(RuleError, match="unknown feature 'viewz'"):
        load_rules([write(tmp_path, GOOD.replace("views > 100", "viewz > 100"))])
    with pytest.raises(RuleError, match="not allowed"):
        load_rules([write(tmp_path, GOOD.replace("views > 100", "__import__('os') > 1"))])


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        ("events >= 10", "(events >= 10)"),
        ("not (carts == 0) or removes != 2", "((NOT (carts = 0)) OR (removes <> 2))"),
        ("1 < views <= 5", "(1 < views AND views <= 5)"),
    ],
)
def test_conditions_compile_to_sql(text, sql):
    assert compile_condition(text)[0] == sql


def test_filters_use_event_columns_and_strings(tmp_path):
    ok = GOOD.replace(
        'window = "5m"', 'window = "5m"\nfilter = "event_type != \'view\' and price > 1"'
    )
    (rule,) = [r for r in load_rules([write(tmp_path, ok)]) if r.name == "many-views"]
    assert rule.filter_sql == "((event_type <> 'view') AND (price > 1))"
    bad = GOOD.replace('window = "5m"', 'window = "5m"\nfilter = "views > 3"')
    with pytest.raises(RuleError, match=r"field filter.*unknown column 'views'"):
        load_rules([write(tmp_path, bad)])


@pytest.mark.parametrize(
    ("condition", "cheap"),
    [
        ("views >= 60 and distinct_products >= 40", "(views >= 60)"),
        # every branch of an `or` has a cheap part: their `or` is necessary
        (
            "purchases == 0 and ((carts >= 12 and removes >= 8) or "
            "(carts >= 20 and carted_products <= 3))",
            "((purchases = 0) AND (((carts >= 12) AND (removes >= 8)) OR (carts >= 20)))",
        ),
        # a branch with none can hold alone: nothing from that `or`
        ("events >= 5 and (carts >= 2 or distinct_products >= 9)", "(events >= 5)"),
        ("distinct_products >= 3 or views > 2", "TRUE"),
        ("not (views >= 3 and distinct_products >= 3)", "TRUE"),
    ],
)
def test_the_cheap_screen_is_implied_by_the_condition(condition, cheap):
    assert prefilter(condition)[0] == cheap


@pytest.mark.parametrize(
    ("condition", "needed"),
    [
        ("sensitive_probes >= 3", "sensitive_probes"),
        ("3 <= sqli_probes", "sqli_probes"),
        ("events >= 30 and login_posts > 0", "login_posts"),
        ("views >= 60", None),  # nearly every window of a shop holds views
        ("xss_probes >= 1 or sqli_probes >= 1", "xss_probes|sqli_probes"),
        ("xss_probes >= 1 or events >= 100", None),  # the second branch needs no such row
        ("sqli_probes >= 0", None),  # holds with none
        ("sqli_probes > 0.5", "sqli_probes"),
        ("requests >= 30", None),  # every web request: skipping on it skips nothing
        ("distinct_paths >= 20", None),
    ],
)
def test_the_row_a_condition_needs(condition: str, needed: str | None) -> None:
    from ecomwatch.detect.features import COUNTED_ROWS
    from ecomwatch.detect.rules import needed_rows

    rows = needed_rows(condition)
    found = None if rows is None else rows[0]
    if needed is None:
        assert found is None
    else:
        assert found == " OR ".join(
            f"({COUNTED_ROWS[n]})" if "|" in needed else COUNTED_ROWS[n] for n in needed.split("|")
        )


@pytest.mark.parametrize(
    ("condition", "least"),
    [
        ("sqli_probes >= 3", 3),
        ("sqli_probes >= 2.5", 3),  # a count is whole
        ("sqli_probes > 2", 3),
        ("2 < sqli_probes", 3),
        ("sqli_probes >= 1 and xss_probes >= 4", 4),  # the conjunct asking for the most
        ("sqli_probes >= 2 or xss_probes >= 5", 2),  # the fewest of the branches
        ("sqli_probes >= 0.5", 1),
    ],
)
def test_how_many_rows_a_condition_needs(condition: str, least: int) -> None:
    from ecomwatch.detect.rules import needed_rows

    found = needed_rows(condition)
    assert found is not None and found[1] == least


def test_a_rule_with_a_baseline_skips_no_window() -> None:
    from ecomwatch.detect.rules import RuleSpec, compile_rule

    plain = RuleSpec(name="carts", key="ip", window="10m", condition="carts >= 5",
                     severity="low")  # fmt: skip
    assert compile_rule(plain).needed_row_sql is not None
    assert compile_rule(plain).needed_row_count == 5
    surge = plain.model_copy(update={"condition": "carts >= 5 and events >= 3 * baseline"})
    assert compile_rule(surge).needed_row_sql is None
    assert compile_rule(surge).round_need is None


def test_a_round_needs_the_product_views_a_rule_counts_though_windows_are_not_screened_by_them():
    from ecomwatch.detect.rules import RuleSpec, compile_rule

    spec = RuleSpec(name="walk", key="ip", window="1m", severity="low",
                    condition="views >= 60 and carts == 0")  # fmt: skip
    rule = compile_rule(spec)
    assert rule.needed_row_sql is None  # nearly every window holds a view
    from ecomwatch.detect.features import is_event

    assert rule.round_need == (is_event("view"), 60)
