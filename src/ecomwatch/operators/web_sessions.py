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
_UNKNOWN = (-1, -1)  # a client with no open session: (last request, session start)


class WebSessions:
    """The pipeline step that gives sessionless web requests their session (see above)."""

    name = "web_sessions"

    def __init__(self, *, gap_s: float = DEFAULT_GAP_S) -> None:
        self.gap_us = int(gap_s * 1_000_000)
        self._open: dict[str, tuple[int, int]] = {}  # client → (last request, session start)
        self._newest_us = 0
        self._evicted_at_us = 0  # event time of the last look for quiet clients

    def apply(self, events: pa.Table) -> pa.Table:
        if not events.num_rows or "status" not in events.column_names:
            return events
        wanted = pc.and_(pc.is_valid(events["status"]), pc.is_null(events["user_session"]))
        wanted = pc.and_(wanted, pc.is_valid(events["ip"]))
        rows = np.flatnonzero(np.asarray(pc.fill_null(wanted, False).to_numpy(False), bool))
        if not len(rows):
            return events
        taken = pa.array(rows)
        names, codes = _clients(events["ip"].take(taken), events["user_agent"].take(taken))
        times = events["event_time"].take(taken).cast(pa.int64()).to_numpy()
        sessions = self._sessions(names, codes, times)
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
        known = np.array([self._open.get(name, _UNKNOWN) for name in names], dtype=np.int64)
        known_last, known_start = known[:, 0], known[:, 1]
        group_last, group_start = known_last[code], known_start[code]
        previous[first] = group_last[first]
        new = (at - previous > self.gap_us) | (first & (group_last < 0))
        start = np.where(new, at, -1)
        start[first & ~new] = group_start[first & ~new]
        filled = np.maximum.accumulate(np.where(start >= 0, np.arange(len(start)), 0))
        start = start[filled]
        # A session is a run of one client's rows with one start; its id is hashed once.
        opens = first.copy()
        opens[1:] |= start[1:] != start[:-1]
        heads = np.flatnonzero(opens)
        ids = np.array(
            [
                session_id(names[c], s)
                for c, s in zip(code[heads].tolist(), start[heads].tolist(), strict=True)
            ],
            dtype=object,
        )
        out = np.empty(len(code), dtype=object)
        out[order] = ids[np.cumsum(opens) - 1]
        self._remember(names, code, at, start, first, known_last)
        return out

    def _remember(
        self, names: list[str], code: np.ndarray, at: np.ndarray, start: np.ndarray,
        first: np.ndarray, known_last: np.ndarray,
    ) -> None:  # fmt: skip
        latest = np.flatnonzero(np.append(first[1:], True))  # each client's latest request
        latest = latest[at[latest] >= known_last[code[latest]]]  # newer than what is known
        self._open.update(
            zip(
                [names[c] for c in code[latest].tolist()],
                zip(at[latest].tolist(), start[latest].tolist(), strict=True),
                strict=True,
            )
        )
        self._newest_us = max(self._newest_us, int(at.max()))
        self._evict()

    def _evict(self) -> None:
        """Forget clients quiet for twice the gap: their next request opens a session anyway
        (the margin covers requests that arrive late). Looked at once per gap of event time."""
        if len(self._open) <= 1024 or self._newest_us - self._evicted_at_us < self.gap_us:
            return
        horizon = self._newest_us - 2 * self.gap_us
        self._open = {k: v for k, v in self._open.items() if v[0] >= horizon}
        self._evicted_at_us = self._newest_us

    def snapshot(self) -> dict[str, Any]:
        return {
            "newest_us": self._newest_us,
            "open": [[name, last, start] for name, (last, start) in sorted(self._open.items())],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._newest_us = int(state.get("newest_us", 0))
        self._open = {name: (int(last), int(start)) for name, last, start in state.get("open", [])}


def _clients(ip: pa.ChunkedArray, agent: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """The distinct clients (IP and user agent) of the requests, and each request's client
    number: pairs of the columns' dictionary codes, so each client's text is built once."""
    ip_codes, ip_values = _codes(ip)
    agent_codes, agent_values = _codes(agent)
    width = len(agent_values) + 1  # the last code: no user agent
    pairs, codes = np.unique(ip_codes * width + agent_codes, return_inverse=True)
    agents = pa.concat_arrays([agent_values, pa.array([""], pa.string())])
    names = pc.binary_join_element_wise(
        ip_values.take(pa.array(pairs // width)), agents.take(pa.array(pairs % width)), _SEP
    )
    return names.to_pylist(), codes.reshape(-1)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """A text column as (code per row, the texts); a null's code is len(texts)."""
    encoded = column.combine_chunks()
    if not pa.types.is_dictionary(encoded.type):
        encoded = encoded.dictionary_encode()
    values = encoded.dictionary.cast(pa.string())
    codes = pc.fill_null(encoded.indices, len(values)).to_numpy().astype(np.int64)
    return codes, values


def session_id(client: str, start_us: int) -> str:
    """A session's id: its client (IP and user agent) and first request time, hashed."""
    digest = hashlib.blake2b(f"{client}{_SEP}{start_us}".encode(), digest_size=8).hexdigest()
    return f"w-{digest}"
