"""`ecomwatch flink run`: a compiled job on a local Flink mini-cluster, in Flink's own Python.

PyFlink pins pyarrow and pandas versions ecomwatch cannot share, so the job runs in its own
environment (`make flink` creates `.venv-flink`; `ECOMWATCH_FLINK_PYTHON` names another
interpreter) as a child process; ecomwatch only starts it and reads what it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecomwatch.detect.alert import Alert

FLINK_PYTHON_ENV = "ECOMWATCH_FLINK_PYTHON"
FLINK_VENV_PYTHON = Path(".venv-flink/bin/python")
# A checkout's own (`make flink` beside an editable install): src/ecomwatch/flink/runner.py.
CHECKOUT = Path(__file__).resolve().parents[3]


class FlinkRunError(RuntimeError):
    """The job could not start or failed; the message says what to do."""


def flink_python() -> Path:
    """The interpreter with PyFlink: $ECOMWATCH_FLINK_PYTHON, else .venv-flink/bin/python in
    the current directory or in the ecomwatch checkout this runs from."""
    named = os.environ.get(FLINK_PYTHON_ENV)
    candidates = [Path(named)] if named else [FLINK_VENV_PYTHON, CHECKOUT / FLINK_VENV_PYTHON]
    for python in candidates:
        if python.exists():
            return python.absolute()
    raise FlinkRunError(
        f"no Flink environment at {' or '.join(map(str, candidates))}: create it with "
        f"`make flink` (PyFlink 2.3 in its own venv), or set {FLINK_PYTHON_ENV} to a Python "
        "that has apache-flink and crawlerdetect"
    )


@dataclass(frozen=True)
class FlinkRun:
    seconds: float
    alerts: list[dict[str, Any]]  # when the sink is files: what the job wrote
    log: Path
    spec: dict[str, Any]  # the job's job.json


def _sink_dir(spec: dict[str, Any]) -> Path | None:
    kind, _, target = spec["sink"].partition(":")
    return Path(target) if kind == "files" else None


def _last_error(log: Path) -> str:
    """The most telling lines of a failed job's log: its last exception messages."""
    lines = log.read_text(errors="replace").splitlines()
    causes = [line for line in lines if "Exception:" in line or "Error:" in line]
    return "\n".join((causes or lines)[-3:])


def run_job(job_dir: Path, *, parallelism: int | None = None) -> FlinkRun:
    """Run the job to the end of its (bounded) input; with a files sink, read its alerts."""
    spec_path = job_dir / "job.json"
    if not spec_path.exists():
        raise FlinkRunError(
            f"{job_dir} holds no job.json: write one with `ecomwatch flink compile`"
        )
    spec = json.loads(spec_path.read_text())
    sink = _sink_dir(spec)
    if sink is not None and sink.exists() and any(sink.iterdir()):
        raise FlinkRunError(
            f"the sink directory {sink} is not empty: alerts of an earlier run would mix with "
            "this one's; remove it or compile with another --sink"
        )
    env = dict(os.environ)
    if parallelism is not None:
        env["ECOMWATCH_FLINK_PARALLELISM"] = str(parallelism)
    log = job_dir / "flink.log"
    started = time.perf_counter()
    with (
        log.open("w") as out,
        tempfile.TemporaryDirectory(prefix="ecomwatch-flink-", ignore_cleanup_errors=True) as tmp,
    ):
        done = subprocess.run(
            [str(flink_python()), "job.py"],
            cwd=job_dir,
            env=scratch_environment(env, Path(tmp)),
            stdout=out,
            stderr=out,
        )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise FlinkRunError(f"the Flink job failed (log: {log}):\n{_last_error(log)}")
    return FlinkRun(seconds, read_alerts(sink) if sink is not None else [], log, spec)


def scratch_environment(env: dict[str, str], scratch: Path) -> dict[str, str]:
    """`env` with the job's temporary files in `scratch`. The mini-cluster keeps its working
    files (a 24 MB copy of its RPC jar, its blob and state directories, the distributed
    cache) in the JVM's temporary directory and does not remove them all when the job ends:
    each run had left about 25 MB in /tmp. The JVM (`JVM_ARGS`, which PyFlink's launcher
    passes to it) and the Python workers (`TMPDIR`) write under `scratch` instead, a
    directory `run_job` removes. A `java.io.tmpdir` the caller set in `JVM_ARGS` stands (its
    files are the caller's to remove)."""
    caller = env.get("JVM_ARGS", "")
    jvm_args = caller if "-Djava.io.tmpdir=" in caller else f"{caller} -Djava.io.tmpdir={scratch}"
    return {**env, "JVM_ARGS": jvm_args.strip(), "TMPDIR": str(scratch)}


def read_alerts(sink: Path) -> list[dict[str, Any]]:
    """The alert lines of a files sink's finished part files, each checked against the
    embedded detector's schema (`Alert.from_json` reads it back)."""
    alerts = []
    for part in sorted(sink.rglob("part-*")):
        for line in part.read_text().splitlines():
            alert = json.loads(line)
            Alert.from_json(alert)
            alerts.append(alert)
    return alerts
