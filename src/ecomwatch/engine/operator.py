"""The operator protocol: what the engine calls for each micro-batch and at each checkpoint."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Protocol

import pyarrow as pa

State = dict[str, Any]


class Operator(Protocol):
    """A stateful step of the pipeline.

    `process` sees every accepted batch with the watermark after it; `snapshot` returns the
    operator's state as JSON-able data, committed with the lake and the source positions;
    `restore` takes that data back after a restart. An operator whose state is kept elsewhere
    (another process) may return a Future of it: the state as of every batch it was handed
    before the snapshot, while the pipeline goes on with the next ones. The committer waits for
    it (`settle`) before it commits, off the pipeline's thread where it can.
    """

    name: str

    def process(self, events: pa.Table, watermark_us: int | None) -> None: ...

    def snapshot(self) -> State | Future[State]: ...

    def restore(self, state: State) -> None: ...


class Transform(Protocol):
    """A stateful step that changes events before the operators see them (sessions of web
    requests). Its state is checkpointed with the operators', under its name."""

    name: str

    def apply(self, events: pa.Table) -> pa.Table: ...

    def snapshot(self) -> State: ...

    def restore(self, state: State) -> None: ...


def unsettled(checkpoint: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Future[State]]]:
    """The checkpoint without the operator states still to come, and those states' futures."""
    operators = checkpoint.get("operators", {})
    later = {name: state for name, state in operators.items() if isinstance(state, Future)}
    if not later:
        return checkpoint, {}
    ready = {name: state for name, state in operators.items() if name not in later}
    return {**checkpoint, "operators": ready}, later


def settle(checkpoint: dict[str, Any], later: dict[str, Future[State]]) -> dict[str, Any]:
    """The checkpoint with the states that were still to come (waits for them)."""
    if later:
        checkpoint["operators"].update({name: f.result() for name, f in later.items()})
    return checkpoint
