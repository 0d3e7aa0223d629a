"""Why an entity was flagged: each comparison of the rule's condition, with the entity's values.

A condition such as `views >= 60 and distinct_products >= 40 and carts == 0` is split into its
comparisons; each is shown with the feature values the alert recorded as evidence, the
threshold, and whether it held.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Term:
    text: str  # the comparison as written, e.g. "views >= 60"
    values: dict[str, float]  # the features it reads, with the alert's values
    held: bool | None  # None when a value is missing from the evidence


def condition_terms(condition: str, evidence: dict[str, Any]) -> list[Term]:
    """The comparisons of a (validated) condition, evaluated on the evidence."""
    tree = ast.parse(condition, mode="eval")
    terms = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        names = sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)})
        values = {n: evidence[n] for n in names if n in evidence}
        held: bool | None = None
        if len(values) == len(names):
            try:
                # Safe: rule validation admits only names, numbers, arithmetic and comparisons.
                held = bool(eval(compile(ast.Expression(node), "<rule>", "eval"), {}, values))
            except ZeroDivisionError:
                held = False
        terms.append(Term(ast.unparse(node), values, held))
    return terms


def matches(alert: dict[str, Any], entity: str) -> bool:
    """An alert about the entity, or one naming it among its IPs or as its group."""
    group = alert.get("group") or {}
    return (
        alert.get("entity") == entity
        or entity in (alert.get("ips") or [])
        or group.get("entity") == entity
    )
