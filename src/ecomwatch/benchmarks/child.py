"""Benchmarks' child processes: `ecomwatch` commands timed from outside, their resident memory
sampled as they go, and this machine's speed at pure Python."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from ecomwatch.process_memory import rss_mb

SAMPLE_S = 0.5


@dataclass
class ChildRun:
    seconds: float
    stdout: str
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds in, MB)

    def last_json_line(self) -> str:
        return self.stdout.strip().splitlines()[-1]

    def peak_rss_mb(self, since_share: float = 0.0, until_share: float = 1.0) -> float:
        """The highest sampled RSS between two shares of the run's time (0.0 to 1.0)."""
        start, stop = since_share * self.seconds, until_share * self.seconds
        inside = [mb for t, mb in self.rss if start <= t <= stop]
        return round(max(inside, default=0.0), 1)


def ecomwatch_command(*args: str) -> list[str]:
    """`ecomwatch ARGS` run by this interpreter (the same installation as the benchmark)."""
    return [sys.executable, "-m", "ecomwatch.cli.main", *args]


def timed_child(
    args: list[str], env: dict[str, str] | None = None, *, sample_rss: bool = False
) -> ChildRun:
    """Run a child process to its end (in this process's environment unless `env` is given);
    its seconds, stdout and (if asked) RSS every half second. A child that fails raises with
    the tail of its stderr."""
    # Output goes to files, not pipes: no pipe fills up while this process only samples.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        child = subprocess.Popen(args, stdout=out, stderr=errors, text=True, env=env)
        samples: list[tuple[float, float]] = []
        while True:
            try:
                child.wait(timeout=SAMPLE_S if sample_rss else None)
                break
            except subprocess.TimeoutExpired:
                samples.append((time.perf_counter() - started, rss_mb(child.pid)))
        seconds = time.perf_counter() - started
        out.seek(0)
        errors.seek(0)
        if child.returncode != 0:
            # `--json` commands put what went wrong in their summary on standard output.
            said = errors.read().strip() or out.read().strip()
            raise RuntimeError(f"{' '.join(args)} failed ({child.returncode}): {said[-2000:]}")
        return ChildRun(seconds, out.read(), samples)


def python_seconds() -> float:
    """This machine's speed at pure Python: `sum(range(10**8))`, reported beside every figure
    (machines differ more at Python than at DuckDB, and the ratios show it)."""
    started = time.perf_counter()
    sum(range(10**8))
    return time.perf_counter() - started
