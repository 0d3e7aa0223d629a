"""`ecomwatch evaluate-logs`: detection on real web logs, where no one labelled the attackers.

What can be measured without labels: per file, its requests and IPs, the share of both from
self-declared bots (crawlers, tools, headless browsers by their user agent), the IPs flagged at
medium or above by each rule; and then the same log with every self-declared bot's user agent
replaced by a common browser's, to see how many of those bots the rules still flag by what they
do alone (a bot that lies about its user agent looks exactly like that).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.config import Config
from ecomwatch.decode.validate import Decoded
from ecomwatch.detect.alert import Alert
from ecomwatch.detect.rules import Rule, is_flagging
from ecomwatch.detect.run import detect
from ecomwatch.detect.user_agents import UserAgentClassifier
from ecomwatch.sources.base import Position, SourceBatch
from ecomwatch.sources.files import FileSource

# What a self-declared bot is made to say instead (a current desktop Chrome).
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@dataclass
class LogScore:
    file: str
    requests: int = 0
    rejected: int = 0
    ips: int = 0
    bot_requests: int = 0
    bot_ips: set[str] = field(default_factory=set)
    search_engine_ips: set[str] = field(default_factory=set)
    flagged_by_rule: dict[str, int] = field(default_factory=dict)
    flagged_ips: int = 0
    flagged_non_bot_ips: int = 0
    masked_bots_flagged: int = 0
    masked_other_bots_flagged: int = 0  # of the bots that are not search engines
    flagged: set[str] = field(default_factory=set)  # IPs, as logged
    masked_flagged: set[str] = field(default_factory=set)  # IPs, bots masked
    bot_lines: set[int] = field(default_factory=set)  # line numbers of self-declared bots

    def to_json(self) -> dict[str, Any]:
        bots = len(self.bot_ips)
        others = bots - len(self.search_engine_ips)
        return {
            "file": self.file,
            "requests": self.requests,
            "rejected": self.rejected,
            "ips": self.ips,
            "bot_request_share": _share(self.bot_requests, self.requests),
            "bot_ips": bots,
            "bot_ip_share": _share(bots, self.ips),
            "search_engine_ips": len(self.search_engine_ips),
            "flagged_ips": self.flagged_ips,
            "flagged_non_bot_ips": self.flagged_non_bot_ips,
            "flagged_by_rule": dict(sorted(self.flagged_by_rule.items())),
            "masked_bots_flagged": self.masked_bots_flagged,
            "masked_bots_flagged_share": _share(self.masked_bots_flagged, bots),
            "masked_other_bots_flagged_share": _share(self.masked_other_bots_flagged, others),
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class _Masked:
    """A file source whose self-declared bots say they are a browser."""

    def __init__(self, source: FileSource, classifier: UserAgentClassifier) -> None:
        self.source, self.classifier = source, classifier
        self.name, self.source_id, self.size = source.name, source.source_id, source.size

    def read(self, start: Position) -> Iterator[SourceBatch]:
        for batch in self.source.read(start):
            events = batch.decoded.events
            if events.num_rows:
                bots = self.classifier.classify(events["user_agent"]).declared_bot
                agents = pc.if_else(bots, BROWSER, events["user_agent"].cast(pa.string()))
                index = events.schema.get_field_index("user_agent")
                typed = agents.dictionary_encode().cast(events.schema.field(index).type)
                events = events.set_column(index, "user_agent", typed)
            decoded = Decoded(events, batch.decoded.rejects, batch.decoded.repaired)
            yield SourceBatch(decoded, batch.position, batch.progress)


def _flagged(alerts: list[Alert]) -> dict[str, set[str]]:
    """IP → the rules that flagged it (medium or above)."""
    out: dict[str, set[str]] = {}
    for alert in alerts:
        if is_flagging(alert.severity):
            for ip in alert.ips:
                out.setdefault(ip, set()).add(alert.rule)
    return out


def evaluate_log(path: Path, rules: list[Rule], config: Config) -> LogScore:
    score = LogScore(path.name)
    classifier = UserAgentClassifier()
    ip_chunks, bot_chunks, engine_chunks = [], [], []
    source = FileSource(path)
    for batch in source.read(Position()):
        events = batch.decoded.events
        score.rejected += batch.decoded.rejects.num_rows
        if not events.num_rows:
            continue
        flags = classifier.classify(events["user_agent"])
        positions = events["source_pos"].filter(flags.declared_bot).to_pylist()
        score.bot_lines.update(positions)
        ip_chunks.append(events["ip"].cast(pa.string()))
        bot_chunks.append(flags.declared_bot)
        engine_chunks.append(flags.search_engine)
    if ip_chunks:
        ips = pa.chunked_array(ip_chunks).to_numpy(zero_copy_only=False)
        bots = np.concatenate([b.to_numpy(zero_copy_only=False) for b in bot_chunks])
        engines = np.concatenate([e.to_numpy(zero_copy_only=False) for e in engine_chunks])
        score.requests, score.ips = len(ips), len(set(ips.tolist()))
        score.bot_requests = int(bots.sum())
        score.bot_ips = set(ips[bots].tolist())
        score.search_engine_ips = set(ips[engines].tolist())
    _, alerts = detect([FileSource(path)], rules, config=config)
    flagged = _flagged(alerts)
    score.flagged = set(flagged)
    score.flagged_ips = len(flagged)
    score.flagged_non_bot_ips = len(set(flagged) - score.bot_ips)
    for names in flagged.values():
        for rule in names:
            score.flagged_by_rule[rule] = score.flagged_by_rule.get(rule, 0) + 1
    _, masked_alerts = detect([_Masked(FileSource(path), classifier)], rules, config=config)
    masked = set(_flagged(masked_alerts))
    score.masked_flagged = masked
    score.masked_bots_flagged = len(masked & score.bot_ips)
    score.masked_other_bots_flagged = len(masked & (score.bot_ips - score.search_engine_ips))
    return score


def write_masked(path: Path, lines: set[int], out: Path) -> None:
    """The log with the user agent of each given line (1-based) replaced by `BROWSER`, for
    other tools to read the same masked log (plain text out, `.gz` read)."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    quoted_field = re.compile(rb'"(?:[^"\\]|\\.)*"')
    with opener(path, "rb") as source, out.open("wb") as target:
        for number, line in enumerate(source, start=1):
            if number in lines:
                quoted = list(quoted_field.finditer(line))
                if len(quoted) >= 3:  # request, referrer, user agent
                    at = quoted[2]
                    line = line[: at.start()] + b'"' + BROWSER.encode() + b'"' + line[at.end() :]
            target.write(line)
