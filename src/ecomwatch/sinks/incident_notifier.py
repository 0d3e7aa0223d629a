"""Notifications per incident, not per alert: the messages a webhook (or a Slack channel) gets.

From the detector's incident records as they change, an incident at `min_severity` or above
gives one message when it opens, one when its severity rises, and one when it resolves (and
one more if it flares again after resolving). An incident below `min_severity` is only counted
in a digest, sent once per `digest_s` of event time and at the end of a run. A merged incident
sends nothing: the one that absorbed it carries on.

As in Prometheus Alertmanager, an incident's first message waits `group_wait_s` (a campaign's
first minute brings its other alerts, merges and escalations, folded into that one message),
and a further update of the same incident waits until `group_interval_s` after the last one.
Incidents are grouped by kind, as Alertmanager groups alerts by label: a kind's openings,
reopenings and resolutions go out together at the group's flushes, the first `group_wait_s`
after the group's first incident and then every `group_interval_s` while the group has an
incident open or a message waiting. Those of one flush are one message (`incidents.opened`,
`incidents.resolved`): a botnet seen on several subnets, whose subnet incidents appear minutes
apart and stay apart until something links them, is announced once and resolved once, not once
per subnet. The price: a second campaign of a kind already announced waits for the group's
next flush, at most `group_interval_s`, as it does in Alertmanager.
Waits run in event time, and for a live service in wall time as well (whichever ends first:
a service whose traffic stops still sends); a file's run, which goes through an hour of event
time in seconds, waits in event time only. A run's end sends whatever is waiting.

Messages go through the webhook sink, which queues, retries and keeps what it cannot deliver,
so the pipeline never waits. What was announced is not kept in checkpoints: after a crash an
incident may be announced again (at least once, never lost).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ecomwatch.detect.alert import parse_iso
from ecomwatch.detect.incident import IncidentState
from ecomwatch.detect.rules import Severity

Style = Literal["json", "slack"]
T = TypeVar("T", int, float)
DIGEST_TITLES = 10  # incidents named in a digest; the rest are counted
ICONS = {"opened": ":rotating_light:", "escalated": ":arrow_up:", "reopened": ":repeat:"}
US = 1_000_000
NOW = -1  # a message due at once


@dataclass
class _Waiting:
    event: str  # opened, escalated, resolved, reopened
    due_us: int  # event time it is due
    due_at: float  # … or wall time (monotonic), whichever comes first
    record: dict[str, Any]  # the latest record: the message says what is true when sent


class IncidentNotifier:
    def __init__(
        self,
        send: Callable[[list[dict[str, Any]]], None],
        *,
        style: Style = "json",
        min_severity: Severity = Severity.MEDIUM,
        digest_s: float = 3600.0,
        group_wait_s: float = 60.0,
        group_interval_s: float = 300.0,
        link: Callable[[str], str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock`: wall time (time.monotonic) for a live service; None: event time only."""
        self.send = send
        self.style = style
        self.floor = min_severity.rank
        self.digest_us = int(digest_s * US)
        self.wait_s, self.interval_s = group_wait_s, group_interval_s
        self.link = link  # incident id → a URL to it (the dashboard's incident page)
        self.clock = clock
        self.sent: dict[str, int] = {}  # message type → messages handed to the webhook
        self._told: dict[str, int] = {}  # incident id → severity rank of its last message
        self._told_at: dict[str, tuple[int, float]] = {}  # … and when (event µs, wall)
        self._resolved: set[str] = set()  # announced as resolved (until it reopens)
        self._waiting: dict[str, _Waiting] = {}
        # kind → its group's first flush (event µs, wall): later ones every interval from it
        self._groups: dict[str, tuple[int, float]] = {}
        self._kind_of: dict[str, str] = {}  # incident id → kind, while announced and open
        self._after: list[dict[str, Any]] = []  # records to note once what waits is sent
        self._digest: dict[str, dict[str, Any]] = {}  # below the floor, since the last digest
        self._digest_from: int | None = None
        self._now_us = 0  # the latest event time seen (records' updated_at)
        self._lock = threading.Lock()  # records() and tick() come from different threads
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def start_ticking(self, every_s: float = 1.0) -> None:
        """Send what is due in wall time even when no record comes (a live service, with a
        clock)."""

        def tick() -> None:
            while not self._stop.wait(every_s):
                self.tick()

        self._ticker = threading.Thread(target=tick, name="incident-notifier", daemon=True)
        self._ticker.start()

    def records(self, records: list[dict[str, Any]]) -> None:
        """The detector's changed incident records (its incident listener)."""
        messages: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            # In event-time order, what fell due before a record goes before it; resolutions
            # wait for the update's last record, to go out together.
            for record in sorted(records, key=lambda r: r["updated_at"]):
                self._now_us = max(self._now_us, _us(record["updated_at"]))
                messages += self._due(resolutions=False)
                self._note(record)
                messages += self._due(resolutions=False)
                while self._after:
                    self._note(self._after.pop(0))
                    messages += self._due(resolutions=False)
            messages += self._due()
            if self._digest_from is not None and self._now_us - self._digest_from >= self.digest_us:
                messages += self._take_digest()
            self._hand(messages)

    def tick(self) -> None:
        with self._lock:
            self._hand(self._due())

    def close(self) -> None:
        """The end of a run: everything waiting is sent, and the digest of what is pending."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            self._hand(self._due(everything=True) + self._take_digest())

    def _note(self, record: dict[str, Any]) -> None:
        """Decide what a changed record means: a message to wait for, one to update, or
        none (more alerts of the same campaign, at the same severity)."""
        incident_id, state = record["incident_id"], record["state"]
        if state == IncidentState.MERGED:
            for kept in (self._told, self._told_at, self._waiting, self._digest, self._kind_of):
                kept.pop(incident_id, None)
            self._resolved.discard(incident_id)
            self._end_quiet_groups()
            return
        rank = Severity(record["severity"]).rank
        waiting = self._waiting.get(incident_id)
        if waiting is not None:
            if state == IncidentState.RESOLVED and waiting.event != "resolved":
                # over before its message went: send that
                waiting.due_us, waiting.due_at = NOW, NOW  # as it was, then this one
                self._after.append(record)
            else:
                waiting.record = record
            return
        told = self._told.get(incident_id)
        if told is None:
            if rank < self.floor:
                if self._digest_from is None:
                    self._digest_from = self._now_us
                self._digest[incident_id] = record
                return
            self._digest.pop(incident_id, None)
            first = "resolved" if state == IncidentState.RESOLVED else "opened"
            self._wait(incident_id, first, record, self.wait_s if first == "opened" else None)
        elif state == IncidentState.RESOLVED:
            if incident_id not in self._resolved:
                self._wait(incident_id, "resolved", record, None)
        elif incident_id in self._resolved:
            self._wait(incident_id, "reopened", record, self.wait_s)
        elif rank > told:
            last_us, last_at = self._told_at[incident_id]
            self._waiting[incident_id] = _Waiting(
                "escalated",
                max(self._now_us, last_us + int(self.interval_s * US)),
                max(self._wall(), last_at + self.interval_s),
                record,
            )

    def _wait(
        self, incident_id: str, event: str, record: dict[str, Any], wait_s: float | None
    ) -> None:
        """Send `event` at its kind's next flush (see the module docstring); `wait_s` is how
        long a new group waits for its first (None: at once)."""
        kind = record["kind"]
        if kind not in self._groups:
            if wait_s is None:
                self._waiting[incident_id] = _Waiting(event, NOW, NOW, record)
                return
            self._groups[kind] = (self._now_us + int(wait_s * US), self._wall() + wait_s)
        due_us, due_at = self._next_flush(kind)
        self._waiting[incident_id] = _Waiting(event, due_us, due_at, record)

    def _next_flush(self, kind: str) -> tuple[int, float]:
        """The group's first flush, or the first of its later ones not past (event time, and
        wall time when there is a clock)."""
        first_us, first_at = self._groups[kind]
        due_us = _step_not_before(first_us, self._now_us, max(1, int(self.interval_s * US)))
        if self.clock is None:
            return due_us, first_at
        return due_us, _step_not_before(first_at, self._wall(), max(self.interval_s, 1e-6))

    def _end_quiet_groups(self) -> None:
        """Forget the groups with nothing open and nothing waiting: the next incident of
        their kind starts a new group (and waits `group_wait_s` again)."""
        busy = {*self._kind_of.values(), *(w.record["kind"] for w in self._waiting.values())}
        for kind in [k for k in self._groups if k not in busy]:
            del self._groups[kind]

    def _wall(self) -> float:
        """Wall time; without a clock, a time no wait ever reaches."""
        return self.clock() if self.clock is not None else float("-inf")

    def _due(
        self, *, everything: bool = False, resolutions: bool = True
    ) -> list[tuple[str, dict[str, Any]]]:
        """The messages due now (`resolutions`: resolutions too), those of incidents of one
        kind opening or resolving together as one."""
        now = self._wall()
        due = [
            (incident_id, waiting)
            for incident_id, waiting in self._waiting.items()
            if (resolutions or waiting.event != "resolved")
            and (
                everything
                or waiting.due_us == NOW
                or waiting.due_us < self._now_us
                or (self.clock is not None and waiting.due_at <= now)
            )
        ]
        messages = []
        together: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (event, kind) → records
        for incident_id, waiting in due:
            del self._waiting[incident_id]
            self._told[incident_id] = Severity(waiting.record["severity"]).rank
            self._told_at[incident_id] = (self._now_us, now)
            if waiting.event == "resolved":
                self._resolved.add(incident_id)
                self._kind_of.pop(incident_id, None)
            else:
                self._resolved.discard(incident_id)
                self._kind_of[incident_id] = waiting.record["kind"]
            if waiting.event in ("opened", "resolved"):
                key = (waiting.event, waiting.record["kind"])
                together.setdefault(key, []).append(waiting.record)
            else:
                messages.append((waiting.event, self._message(waiting.event, waiting.record)))
        if due:
            self._end_quiet_groups()
        grouped = [(event, self._together(event, rs)) for (event, _), rs in together.items()]
        opened = [message for message in grouped if message[0] == "opened"]
        return opened + messages + [message for message in grouped if message[0] == "resolved"]

    def _message(self, event: str, record: dict[str, Any]) -> dict[str, Any]:
        url = self._url(record["incident_id"])
        if self.style == "json":
            return {"type": f"incident.{event}", "incident": _summary(record), "url": url}
        icon = ICONS.get(event, ":white_check_mark:")
        text = (
            f"{icon} *{event}*: {record['title']} "
            f"({record['severity']}, {record['alerts']:,} alerts)"
        )
        if url:
            text += f" <{url}|{record['incident_id']}>"
        if event != "resolved":
            text += f"\n{record['explanation']}"
        return {"text": text}

    def _url(self, incident_id: str) -> str | None:
        return self.link(incident_id) if self.link else None

    def _together(self, event: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The message for the incidents of one kind opening (or resolving) together (one:
        its own)."""
        if len(records) == 1:
            return self._message(event, records[0])
        if self.style == "json":
            return {
                "type": f"incidents.{event}",
                "count": len(records),
                "incidents": [{**_summary(r), "url": self._url(r["incident_id"])} for r in records],
            }
        icon = ICONS.get(event, ":white_check_mark:")
        lines = [f"{icon} *{event}*: {len(records)} {records[0]['kind']} incidents"]
        for record in records:
            line = f"• {record['title']} ({record['severity']}, {record['alerts']:,} alerts)"
            url = self._url(record["incident_id"])
            if url:
                line += f" <{url}|{record['incident_id']}>"
            lines.append(line)
        return {"text": "\n".join(lines)}

    def _take_digest(self) -> list[tuple[str, dict[str, Any]]]:
        pending = sorted(self._digest.values(), key=lambda r: r["first_seen"])
        self._digest, self._digest_from = {}, None
        if not pending:
            return []
        counts: dict[str, int] = {}
        for record in pending:
            counts[record["severity"]] = counts.get(record["severity"], 0) + 1
        named = pending[:DIGEST_TITLES]
        if self.style == "json":
            return [
                (
                    "digest",
                    {
                        "type": "incidents.digest",
                        "count": len(pending),
                        "by_severity": counts,
                        "incidents": [
                            {k: r[k] for k in ("incident_id", "title", "severity", "state")}
                            for r in named
                        ],
                    },
                )
            ]
        lines = [f"• {r['title']} ({r['severity']}, {r['state']})" for r in named]
        more = len(pending) - len(named)
        if more:
            lines.append(f"… and {more:,} more")
        heading = f":memo: *digest*: {len(pending):,} low-severity incident(s)"
        return [("digest", {"text": "\n".join([heading, *lines])})]

    def _hand(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """To the webhook's queue (it returns at once), under the lock: in order."""
        if not messages:
            return
        for kind, _ in messages:
            self.sent[kind] = self.sent.get(kind, 0) + 1
        self.send([body for _, body in messages])


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """What a message says of an incident."""
    return {
        k: record.get(k)
        for k in (
            "incident_id", "title", "kind", "severity", "state", "first_seen",
            "last_seen", "alerts", "ip_count", "ips", "events", "rules", "explanation",
        )
    }  # fmt: skip


def _step_not_before(first: T, now: T, step: T) -> T:
    """The first of `first`, `first + step`, `first + 2 step`… not before `now`."""
    return first + max(0, -(-(now - first) // step)) * step


def _us(text: str) -> int:
    return int(parse_iso(text).timestamp() * 1_000_000)
