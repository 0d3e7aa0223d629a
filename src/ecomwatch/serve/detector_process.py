"""The live service's detector in a process of its own, with a GIL of its own.

In the service's process the detector's DuckDB queries compete with the collector's threads for
Python's GIL, and DuckDB takes the GIL back many times a query (it reads Arrow data through
Python). One judging round of the default rules over 12,500-event batches, measured alone:
152 ms; beside one busy Python thread: 4.2 s (`docs/BENCHMARKS.md`). In a child process the
rounds run at their own speed on the other core while the parent decodes requests.

The parent (`DetectorProcess`, an operator of the service's pipeline) sends on one pipe, in
order: batches (the columns the detector keeps, as Arrow IPC, with the watermark and whether
the collector's queue is behind), snapshot and restore requests, and stop. The child answers on
a second pipe: alerts as soon as a rule raises them and the incident records they change (the
parent hands both to its listeners on a reader thread), the state for each snapshot, or the
error that ended it. A snapshot is a Future answered after every batch sent before it, so a
checkpoint holds the state that matches the committed positions, as with the detector in
process; the pipeline does not wait for it (the lake writer's commit thread does). The child
writes the alerts file and the incidents log beside it itself.
At most `depth` batches wait in the child; beyond that the pipeline waits (backpressure).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

from ecomwatch.config import IncidentsConfig
from ecomwatch.detect.detector import STATE_COLUMNS, Detector, ipc_bytes
from ecomwatch.detect.entity_keys import IPV6_PREFIX
from ecomwatch.detect.rules import Rule
from ecomwatch.engine.operator import State

Listener = Callable[[list[dict[str, Any]]], None]


class DetectorProcess:
    """The pipeline's detector operator, run in a child process."""

    name = "detector"

    def __init__(
        self,
        rules: list[Rule],
        *,
        alerts_path: Path,
        listeners: Sequence[Listener] = (),
        incident_listeners: Sequence[Listener] = (),
        incidents: IncidentsConfig | None = None,
        judge_share: float = 1.0,
        behind: Callable[[], bool] = lambda: False,
        depth: int = 4,
        ipv6_prefix_bits: int = IPV6_PREFIX,
    ) -> None:
        self.listeners = list(listeners)
        self.incident_listeners = list(incident_listeners)
        self.behind = behind
        self._error: str | None = None
        self._stopping = False
        self._waiting: deque[Future[State]] = deque()  # snapshots not answered yet, in order
        context = multiprocessing.get_context("spawn")  # never fork a process with threads
        commands_in, self._commands = context.Pipe(duplex=False)
        self._answers, answers_out = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child,
            args=(
                commands_in,
                answers_out,
                rules,
                str(alerts_path),
                incidents or IncidentsConfig(),
                judge_share,
                depth,
                ipv6_prefix_bits,
            ),
            name="ecomwatch-detector",
            daemon=True,
        )
        self._process.start()
        commands_in.close()
        answers_out.close()
        self._reader = threading.Thread(target=self._read, name="detector-answers", daemon=True)
        self._reader.start()

    # operator protocol -------------------------------------------------------------------

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        self._check()
        batch = ipc_bytes(events.select(list(STATE_COLUMNS))) if events.num_rows else b""
        self._send(("batch", batch, watermark_us, self.behind()))

    def snapshot(self) -> Future[State]:
        """The state as of every batch sent so far; it comes later, while the pipeline goes on
        (the lake writer waits for it on its commit thread)."""
        self._check()
        state: Future[State] = Future()
        self._waiting.append(state)
        self._send(("snapshot",))
        return state

    def restore(self, state: State) -> None:
        self._check()
        self._send(("restore", state))

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop the child once it has processed what was sent; its alerts file is closed."""
        self._stopping = True
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._commands.send(("stop",))
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._reader.join(timeout_s)
        self._commands.close()

    # internals ---------------------------------------------------------------------------

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self._commands.send(message)
        except OSError as exc:
            self._check()
            raise RuntimeError(f"the detector process is gone: {exc}") from exc

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the detector process failed: {self._error}")

    def _read(self) -> None:
        """The child's answers: alerts to the listeners, states to the snapshots waiting."""
        while True:
            try:
                kind, payload = self._answers.recv()
            except (EOFError, OSError):
                if self._error is None and not self._stopping:
                    self._error = "it ended unexpectedly"
                break
            if kind in ("alerts", "incidents"):
                listeners = self.listeners if kind == "alerts" else self.incident_listeners
                for listener in listeners:
                    try:
                        listener(payload)
                    except Exception as exc:  # keep reading: the child must never block on us
                        self._error = f"an {kind[:-1]} listener failed: {exc!r}"
            elif kind == "state":
                self._waiting.popleft().set_result(payload)
            else:  # "error": the child's traceback; it exits after sending it
                self._error = payload
        while self._waiting:
            self._waiting.popleft().set_exception(
                RuntimeError(f"the detector process failed: {self._error or 'it stopped'}")
            )


def _child(
    commands: Connection,
    answers: Connection,
    rules: list[Rule],
    alerts_path: str,
    incidents: IncidentsConfig,
    judge_share: float,
    depth: int,
    ipv6_prefix_bits: int,
) -> None:
    """The detector's process: batches in order, alerts out as they are raised."""
    from ecomwatch.detect.incident import incidents_path_for
    from ecomwatch.serve.memory import use_returning_allocators
    from ecomwatch.sinks.jsonl import JsonLinesFile

    # Ctrl-C reaches the whole process group; the parent decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    use_returning_allocators()
    inbox: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=depth)

    def receive() -> None:
        while True:
            try:
                message = commands.recv()
            except (EOFError, OSError):  # the parent is gone
                message = ("stop",)
            inbox.put(message)
            if message[0] == "stop":
                return

    threading.Thread(target=receive, name="commands", daemon=True).start()
    parent_behind = False
    sink = JsonLinesFile(alerts_path)
    incident_sink = JsonLinesFile(incidents_path_for(Path(alerts_path)))
    detector = Detector(
        rules,
        sink=sink,
        listeners=[lambda alerts: answers.send(("alerts", alerts))],
        incidents=incidents,
        incident_sink=incident_sink,
        incident_listeners=[lambda records: answers.send(("incidents", records))],
        keep_alerts=False,
        judge_share=judge_share,
        # Judging waits while more batches are queued here or the collector is behind.
        behind=lambda: parent_behind or not inbox.empty(),
        ipv6_prefix_bits=ipv6_prefix_bits,
    )
    try:
        while True:
            message = inbox.get()
            if message[0] == "batch":
                _, data, watermark_us, parent_behind = message
                events = pa.ipc.open_stream(data).read_all() if data else pa.table({})
                detector.process(events, watermark_us)
            elif message[0] == "snapshot":
                answers.send(("state", detector.snapshot()))
            elif message[0] == "restore":
                detector.restore(message[1])
            else:
                break
    except BaseException:
        answers.send(("error", traceback.format_exc()))
        raise
    finally:
        sink.close()
        incident_sink.close()
        answers.close()
