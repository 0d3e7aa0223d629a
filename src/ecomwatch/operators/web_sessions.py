"""Sessions for web requests that carry none: client address + user agent, split at inactivity.

A web log names no session (unless it logs a cookie), yet the funnel, cart abandonment and the
per-session rules need one. The usual heuristic of web analytics is used: the requests of one
(IP, user agent) belong to one session until that client is quiet for `gap_s` (30 minutes);
the next request opens a new one. Requests are taken in the order they arrive (a log is in time
order); an out-of-order request joins the session open at the time.

A session's id is a hash of the client and the session's first request time, so the same log
gives the same sessions on every run, and after a restart from a checkpoint (the open sessions
are the state). Only rows of a web log without a session are touched (status set, no
`user_session`); a shop's own events keep theirs. Vectorized: Python loops once per distinct
client of a batch, never per request.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_GAP_S = 30 * 60
_SEP = "\x1f"


class WebSessions:
    """The pipeline step that gives sessionless web requests their session (see above)."""

    name = "web_sessions"

    def __init__(self, *, gap_s: float = DEFAULT_GAP_S) -> None:
        self.gap_us = int(gap_s * 1_000_000)
        self._open: dict[str, tuple[int, int]] = {}  # client → (last request, session start)
        self._newest_us = 0

    def apply(self, events: pa.Table) -> pa.Table:
        if not events.num_rows or "status" not in events.column_names:
            return events
        wanted = pc.and_(pc.is_valid(events["status"]), pc.is_null(events["user_session"]))
        wanted = pc.and_(wanted, pc.is_valid(events["ip"]))
        rows = np.flatnonzero(np.asarray(pc.fill_null(wanted, False).to_numpy(False), bool))
        if not len(rows):
            return events
        taken = pa.array(rows)
        ip = events["ip"].take(taken).cast(pa.string())
        agent = pc.fill_null(events["user_agent"].take(taken).cast(pa.string()), "")
        clients = pc.binary_join_element_wise(ip, agent, _SEP).combine_chunks().dictionary_encode()
        times = events["event_time"].take(taken).cast(pa.int64()).to_numpy()
        sessions = self._sessions(clients.dictionary.to_pylist(), clients.indices.to_numpy(), times)
        column = events["user_session"].to_numpy(zero_copy_only=False).astype(object)
        column[rows] = sessions
        index = events.schema.get_field_index("user_session")
        session = pa.array(column, pa.string())
        return events.set_column(index, "user_session", session)

    def _sessions(self, names: list[str], codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        """The session id of each request (client code, time), in the batch's row order."""
        order = np.lexsort((np.arange(len(codes)), times, codes))  # by client, then time
        code, at = codes[order], times[order]
        first = np.ones(len(code), dtype=bool)
        first[1:] = code[1:] != code[:-1]
        # The previous request of the same client: in this batch, or the open session's last.
        previous = np.empty_like(at)
        previous[1:] = at[:-1]
        known_last = np.full(len(names), -1, dtype=np.int64)
        known_start = np.full(len(names), -1, dtype=np.int64)
        for i, name in enumerate(names):
            found = self._open.get(name)
            if found is not None:
                known_last[i], known_start[i] = found
        group_last, group_start = known_last[code], known_start[code]
        previous[first] = group_last[first]
        new = (at - previous > self.gap_us) | (first & (group_last < 0))
        start = np.where(new, at, -1)
        start[first & ~new] = group_start[first & ~new]
        filled = np.maximum.accumulate(np.where(start >= 0, np.arange(len(start)), 0))
        start = start[filled]
        # One id per (client, start); the hash is computed once per session.
        pairs, inverse = np.unique(np.stack([code, start], axis=1), axis=0, return_inverse=True)
        ids = np.array([session_id(names[c], int(s)) for c, s in pairs], dtype=object)
        out = np.empty(len(code), dtype=object)
        out[order] = ids[inverse.reshape(-1)]
        self._remember(names, code, at, start, first)
        return out

    def _remember(
        self, names: list[str], code: np.ndarray, at: np.ndarray, start: np.ndarray,
        first: np.ndarray,
    ) -> None:  # fmt: skip
        last_rows = np.flatnonzero(np.append(first[1:], True))  # each client's latest request
        for row in last_rows.tolist():
            name = names[code[row]]
            old = self._open.get(name)
            if old is None or at[row] >= old[0]:
                self._open[name] = (int(at[row]), int(start[row]))
        self._newest_us = max(self._newest_us, int(at.max()))
        self._evict()

    def _evict(self) -> None:
        """Forget clients quiet for twice the gap: their next request opens a session anyway
        (the margin covers requests that arrive late)."""
        horizon = self._newest_us - 2 * self.gap_us
        if len(self._open) > 1024 and min(v[0] for v in self._open.values()) < horizon:
            self._open = {k: v for k, v in self._open.items() if v[0] >= horizon}

    def snapshot(self) -> dict[str, Any]:
        return {
            "newest_us": self._newest_us,
            "open": [[name, last, start] for name, (last, start) in sorted(self._open.items())],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._newest_us = int(state.get("newest_us", 0))
        self._open = {name: (int(last), int(start)) for name, last, start in state.get("open", [])}


def session_id(client: str, start_us: int) -> str:
    """A session's id: its client (IP and user agent) and first request time, hashed."""
    digest = hashlib.blake2b(f"{client}{_SEP}{start_us}".encode(), digest_size=8).hexdigest()
    return f"w-{digest}"
