"""`ecomwatch serve --source kinesis://STREAM`: the dashboard's pipeline fed by a stream."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.kinesis_servers import CREDENTIALS, create_stream, use_endpoint
from tests.serve.conftest import start_server
from tests.sources.test_kinesis import lake_keys, shop_file

pytestmark = pytest.mark.integration


def test_serve_reads_a_stream_and_exports_shard_lag(
    moto_kinesis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecomwatch.serve.stream_replay import replay_to_stream

    name = f"serve-{time.monotonic_ns()}"
    create_stream(moto_kinesis, name, 2)
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": moto_kinesis, "ECOMWATCH_KINESIS__IDLE_POLL_S": "0.2"}
    server = start_server(tmp_path / "lake", env=env, extra=("--source", f"kinesis://{name}"))
    try:
        use_endpoint(monkeypatch, moto_kinesis)  # the producer, here
        replay_to_stream([shop_file(tmp_path, 2_500, seed=31)], name, per_record=50)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, summary = server.get_json("/api/summary")
            if status == 200 and summary.get("events_processed") == 2_500:
                break
            time.sleep(0.2)
        assert summary.get("events_processed") == 2_500, summary
        _, _, metrics = server.request("GET", "/metrics")
        lag = [
            line
            for line in metrics.decode().splitlines()
            if line.startswith("ecomwatch_kinesis_millis_behind_latest{")
        ]
        assert len(lag) == 2 and all(line.endswith(" 0.0") for line in lag), lag
        status, answer = server.post_events([{"event_type": "view"}])
        assert status == 409 and "send events to the stream" in json.dumps(answer)
    finally:
        stderr = server.stop()
    assert server.process.returncode == 0, stderr
    assert len(set(lake_keys(tmp_path / "lake"))) == 2_500
