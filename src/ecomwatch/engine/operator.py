"""The operator protocol: what the engine calls for each micro-batch and at each checkpoint."""

from __future__ import annotations

from typing import Any, Protocol

import pyarrow as pa


class Operator(Protocol):
    """A stateful step of the pipeline.

    `process` sees every accepted batch with the watermark after it; `snapshot` returns the
    operator's state as JSON-able data, committed with the lake and the source positions;
    `restore` takes that data back after a restart.
    """

    name: str

    def process(self, events: pa.Table, watermark_us: int | None) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...
