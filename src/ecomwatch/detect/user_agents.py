"""Declared bots: crawlers, headless browsers and HTTP libraries, from the crawlerdetect list.

Well-known search engines are told apart so that rules can label them instead of alerting.
Each distinct user agent is classified once and cached (a shop sees a few thousand).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from crawlerdetect import CrawlerDetect

from ecomwatch.schema import dictionary_chunks

SEARCH_ENGINES = re.compile(
    r"googlebot|bingbot|yandex(bot|images)|baiduspider|duckduckbot|applebot|slurp|"
    r"petalbot|seznambot|naver|sogou",
    re.IGNORECASE,
)
MAX_CACHED = 100_000


@dataclass(frozen=True)
class AgentFlags:
    declared_bot: pa.Array
    search_engine: pa.Array


class UserAgentClassifier:
    def __init__(self) -> None:
        self._detector = CrawlerDetect()
        self._cache: dict[str, tuple[bool, bool]] = {}

    def classify_one(self, agent: str) -> tuple[bool, bool]:
        found = self._cache.get(agent)
        if found is None:
            bot = bool(self._detector.isCrawler(agent))
            found = (bot, bot and SEARCH_ENGINES.search(agent) is not None)
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[agent] = found
        return found

    def classify(self, agents: pa.ChunkedArray) -> AgentFlags:
        """Flags per row; each distinct agent of a chunk is looked up once."""
        bots, engines = [], []
        for chunk in dictionary_chunks(agents):
            values = chunk.dictionary.cast(pa.string()).to_pylist()
            flags = np.array(
                [self.classify_one(v) if v else (False, False) for v in values] or [(False, False)],
                bool,
            )
            valid = np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            indices = chunk.indices.to_numpy(zero_copy_only=False)
            safe = np.where(valid, indices, 0).astype(np.int64)
            bots.append(flags[safe, 0] & valid)
            engines.append(flags[safe, 1] & valid)
        if not bots:
            return AgentFlags(pa.array([], pa.bool_()), pa.array([], pa.bool_()))
        return AgentFlags(
            declared_bot=pa.array(np.concatenate(bots)),
            search_engine=pa.array(np.concatenate(engines)),
        )
