"""The lake writer commits a checkpoint whose operator state comes later (the service's
detector process answers its snapshot while the pipeline goes on): the pipeline does not wait,
the commit holds the state, and a state that never comes fails the commit instead of losing it."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ecomwatch.lake.base import resolved
from ecomwatch.lake.open import LakeFormat, open_lake
from ecomwatch.operators.lake_writer import LakeWriter
from ecomwatch.testing import events_table

EVENT = {
    "event_time": datetime(2019, 11, 1, 10, tzinfo=UTC),
    "event_type": "view",
    "product_id": 1,
    "price": 1.0,
    "user_id": 2,
    "source": "test",
    "source_pos": 0,
}


def checkpoint(detector_state) -> dict:
    return {"version": 1, "sources": {}, "operators": {"lake": {}, "detector": detector_state}}


def test_a_state_that_comes_later_is_committed_without_the_pipeline_waiting(tmp_path: Path):
    table = open_lake(tmp_path / "lake", writer=True, new_format=LakeFormat.PARQUET)
    committed: list[dict] = []
    commit = table.commit

    def recording(events, state):
        def settled() -> dict:  # asked for once the commit's data files are written
            whole = resolved(state)
            committed.append(whole["operators"]["detector"])
            return whole

        return commit(events, settled)

    table.commit = recording  # type: ignore[method-assign]
    writer = LakeWriter(table)
    state: Future[dict] = Future()
    writer.process(events_table([EVENT]), None)
    writer.commit(checkpoint(state))  # returns at once: the state is not there yet
    writer.process(events_table([{**EVENT, "source_pos": 1}]), None)
    writer.commit(checkpoint({"alerts_bytes": 50}))  # queued behind it, no wait either
    assert not state.done() and writer.commits == [] and committed == []
    threading.Timer(0.2, state.set_result, [{"alerts_bytes": 42}]).start()
    writer.flush()
    assert committed == [{"alerts_bytes": 42}, {"alerts_bytes": 50}]  # in order, each its own
    assert table.last_checkpoint()["operators"] == {"lake": {}, "detector": {"alerts_bytes": 50}}
    assert [c.rows for c in writer.commits] == [1, 1]
    writer.close()


def test_a_state_that_fails_fails_the_commit(tmp_path: Path):
    table = open_lake(tmp_path / "lake", writer=True, new_format=LakeFormat.PARQUET)
    writer = LakeWriter(table)
    state: Future[dict] = Future()
    state.set_exception(RuntimeError("the detector process failed: boom"))
    writer.process(events_table([EVENT]), None)
    writer.commit(checkpoint(state))
    with pytest.raises(RuntimeError, match="boom"):
        writer.flush()
    assert table.last_checkpoint() is None
    writer.close()


@pytest.mark.parametrize("lake_format", [LakeFormat.HUDI, LakeFormat.PARQUET])
def test_the_checkpoint_is_asked_for_once_the_data_files_are_written(
    tmp_path: Path, lake_format: LakeFormat
):
    table = open_lake(tmp_path / "lake", writer=True, new_format=lake_format)
    files_then: list[int] = []

    def checkpoint_when_asked() -> dict:
        files_then.append(len(list((tmp_path / "lake").rglob("*.parquet"))))
        return {"n": 1}

    table.commit(events_table([EVENT]), checkpoint_when_asked)
    assert files_then and files_then[0] >= 1
    assert table.last_checkpoint() == {"n": 1}
