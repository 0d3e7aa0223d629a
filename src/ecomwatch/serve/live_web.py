"""Live web-traffic figures for the dashboard, when the service receives a web log's requests
(`replay access.log`, or a site sending its requests): the status mix, what is requested,
the share from self-declared bots, the top pages and the paths answered 4xx most (what
scanners look for). A shop's own events have no status and are not counted here.

Counted per batch with pyarrow (one `value_counts` per column, each distinct user agent
classified once). Paths are unbounded in a scan, so their counters are trimmed: past
`MAX_PATHS` distinct paths, the least requested are dropped, which keeps the top ten exact
unless a path's requests arrive evenly spread over a very long scan.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.detect.user_agents import UserAgentClassifier

TOP = 10
MAX_PATHS = 5_000


class LiveWeb:
    name = "live_web"

    def __init__(self) -> None:
        self.requests = 0
        self.bot_requests = 0
        self.status: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.pages: Counter[str] = Counter()
        self.not_found: Counter[str] = Counter()
        self._agents = UserAgentClassifier()
        self.published: dict[str, Any] = self._publish()

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        if not events.num_rows or "status" not in events.column_names:
            return
        web = events.filter(pc.is_valid(events["status"]))
        if not web.num_rows:
            return
        self.requests += web.num_rows
        status = web["status"]
        classes = pc.cast(pc.divide(status, pa.scalar(100, pa.int16())), pa.string())
        _add(self.status, pc.binary_join_element_wise(classes, "xx", ""))
        kinds = pc.fill_null(web["request_kind"].cast(pa.string()), "other")
        _add(self.kinds, kinds)
        pages = pc.is_in(kinds, pa.array(["page", "api"]))
        _add(self.pages, web["path"].filter(pages), limit=True)
        client_errors = pc.and_(pc.greater_equal(status, 400), pc.less(status, 500))
        _add(self.not_found, web["path"].filter(client_errors), limit=True)
        self.bot_requests += self._bots(web["user_agent"])
        self.published = self._publish()

    def _bots(self, agents: pa.ChunkedArray) -> int:
        flags = self._agents.classify(agents)
        return int(pc.sum(flags.declared_bot).as_py() or 0)

    def _publish(self) -> dict[str, Any]:
        share = round(self.bot_requests / self.requests, 4) if self.requests else 0.0
        return {
            "requests": self.requests,
            "status": dict(sorted(self.status.items())),
            "request_kinds": dict(self.kinds.most_common()),
            "bot_requests": self.bot_requests,
            "bot_share": share,
            "top_paths": [{"path": p, "requests": n} for p, n in self.pages.most_common(TOP)],
            "top_4xx_paths": [
                {"path": p, "requests": n} for p, n in self.not_found.most_common(TOP)
            ],
        }

    def snapshot(self) -> dict[str, Any]:
        return {}  # live figures restart with the service; the lake keeps the history

    def restore(self, state: dict[str, Any]) -> None:
        return None


def _add(counter: Counter[str], values: pa.ChunkedArray | pa.Array, *, limit: bool = False) -> None:
    """Count the values into `counter` (nulls skipped), trimmed to MAX_PATHS if `limit`."""
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    for item in pc.value_counts(values).to_pylist():
        if item["values"] is not None:
            counter[item["values"]] += item["counts"]
    if limit and len(counter) > MAX_PATHS:
        for path, _ in counter.most_common()[MAX_PATHS // 2 :]:
            del counter[path]
