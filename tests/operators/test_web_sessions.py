"""Sessions of web requests: IP + user agent, a new one after 30 quiet minutes, the same ids
however the requests are batched and across a restart."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomwatch.operators.web_sessions import WebSessions
from ecomwatch.schema import EVENT_SCHEMA

T0 = datetime(2025, 10, 10, 12, 0, tzinfo=UTC)


def _requests(rows: list[tuple[str, str, float]], *, session: str | None = None) -> pa.Table:
    """Web requests (ip, user agent, minutes after T0)."""
    n = len(rows)
    columns = {
        "event_time": [T0 + timedelta(minutes=m) for _, _, m in rows],
        "event_type": ["request"] * n,
        "ip": [ip for ip, _, _ in rows],
        "user_agent": [agent for _, agent, _ in rows],
        "user_session": [session] * n,
        "source": ["s"] * n,
        "source_pos": list(range(n)),
        "status": [200] * n,
    }
    arrays = [
        pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
        for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def _sessions(table: pa.Table) -> list[str]:
    return table["user_session"].to_pylist()


def test_one_client_is_one_session_until_it_is_quiet_for_30_minutes() -> None:
    table = _requests([("1.1.1.1", "A", 0), ("1.1.1.1", "A", 29), ("1.1.1.1", "A", 58),
                       ("1.1.1.1", "A", 89), ("1.1.1.1", "B", 1), ("2.2.2.2", "A", 2)])  # fmt: skip
    got = _sessions(WebSessions().apply(table))
    assert got[0] == got[1] == got[2]  # gaps of 29 minutes
    assert got[3] != got[2]  # 31 quiet minutes
    assert len({got[0], got[4], got[5]}) == 3  # another user agent, another address
    assert all(s.startswith("w-") for s in got)


def test_a_session_continues_into_the_next_batch_and_after_a_restart() -> None:
    first = _requests([("1.1.1.1", "A", 0), ("3.3.3.3", "C", 0)])
    later = _requests([("1.1.1.1", "A", 20), ("3.3.3.3", "C", 40)])
    step = WebSessions()
    opened = _sessions(step.apply(first))
    restarted = WebSessions()
    restarted.restore(step.snapshot())
    got = _sessions(restarted.apply(later))
    assert got[0] == opened[0]
    assert got[1] != opened[1]


def test_events_that_have_a_session_or_are_no_web_requests_keep_theirs() -> None:
    own = _requests([("1.1.1.1", "A", 0)], session="cookie-1")
    assert _sessions(WebSessions().apply(own)) == ["cookie-1"]
    shop = own.set_column(
        own.schema.get_field_index("status"), "status", pa.nulls(1, pa.int16())
    ).set_column(own.schema.get_field_index("user_session"), "user_session",
                 pa.nulls(1, pa.string()))  # fmt: skip
    assert _sessions(WebSessions().apply(shop)) == [None]


def test_quiet_clients_are_forgotten() -> None:
    step = WebSessions()
    step.apply(_requests([(f"10.0.{i // 250}.{i % 250}", "A", 0) for i in range(2000)]))
    step.apply(_requests([("1.1.1.1", "A", 120)]))
    assert len(step.snapshot()["open"]) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["1.1.1.1", "2.2.2.2"]), st.sampled_from(["A", "B"]),
                  st.integers(0, 50)),
        min_size=1, max_size=40,
    ),
    st.lists(st.integers(1, 40), max_size=5),
)  # fmt: skip
def test_batching_and_restarts_do_not_change_the_sessions(
    steps: list[tuple[str, str, int]], cuts: list[int]
) -> None:
    # Requests in time order, as a log is; gaps of 0 to 50 minutes between them.
    rows, minute = [], 0
    for ip, agent, gap in steps:
        minute += gap
        rows.append((ip, agent, float(minute)))
    whole = _sessions(WebSessions().apply(_requests(rows)))
    bounds = sorted({0, len(rows), *(c for c in cuts if c < len(rows))})
    step, pieces = WebSessions(), []
    for start, stop in itertools.pairwise(bounds):
        pieces += _sessions(step.apply(_requests(rows[start:stop])))
        state = step.snapshot()
        step = WebSessions()
        step.restore(state)
    assert pieces == whole
