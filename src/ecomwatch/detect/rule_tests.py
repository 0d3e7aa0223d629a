"""`ecomwatch rules test`: rule fixtures (events and the alerts they must and must not raise).

A fixture file is TOML:

    rules = "my_rules.toml"          # optional, beside this file; added to the defaults

    [[case]]
    name = "a scraper is caught"
    events = "scraper.csv"           # beside this file; any input format
    [[case.expect]]                  # an alert must exist (severity: at least this)
    rule = "fast-scraper"
    entity = "203.0.113.7"
    severity = "high"
    [[case.forbid]]                  # no alert at or above `severity` may name this entity
    entity = "198.51.100.20"
    severity = "medium"

Events are replayed in event time through the same engine as `ecomwatch detect`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from ecomwatch.config import Config
from ecomwatch.detect.rules import RuleError, Severity, load_rules
from ecomwatch.detect.run import detect


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: str
    entity: str
    severity: Severity = Severity.INFO


class Forbid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entity: str
    severity: Severity = Severity.MEDIUM
    rule: str | None = None  # any rule unless named


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    events: str
    expect: list[Expect] = []
    forbid: list[Forbid] = []


class FixtureFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: str | None = None
    case: list[Case]


@dataclass(frozen=True)
class CaseResult:
    name: str
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def run_fixture_file(path: Path, config: Config) -> list[CaseResult]:
    """Run every case of a fixture file; RuleError if the file or its rules are invalid."""
    from ecomwatch.ingest import open_inputs

    try:
        spec = FixtureFile.model_validate(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise RuleError(f"{path}: not a valid rule fixture file ({exc})") from exc
    rules = load_rules([path.parent / spec.rules] if spec.rules else [])
    results = []
    for case in spec.case:
        sources, errors = open_inputs([path.parent / case.events], config)
        if errors:
            results.append(CaseResult(case.name, [str(e) for e in errors]))
            continue
        _, alerts = detect(sources, rules, config=config)
        final = {a.alert_id: a for a in alerts}.values()  # an escalation repeats its id
        problems = []
        for want in case.expect:
            if not any(
                a.rule == want.rule
                and a.entity == want.entity
                and a.severity.rank >= want.severity.rank
                for a in final
            ):
                problems.append(
                    f"expected {want.rule} on {want.entity} at {want.severity.value} or above"
                )
        for ban in case.forbid:
            hits = [
                a
                for a in final
                if (a.entity == ban.entity or ban.entity in a.ips)
                and a.severity.rank >= ban.severity.rank
                and (ban.rule is None or a.rule == ban.rule)
            ]
            problems += [
                f"unexpected {a.rule} ({a.severity.value}) on {ban.entity}: {a.explanation}"
                for a in hits
            ]
        results.append(CaseResult(case.name, problems))
    return results
