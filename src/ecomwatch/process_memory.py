"""Resident memory of processes, from /proc (Linux), for run summaries and benchmarks."""

from __future__ import annotations

import resource
from pathlib import Path


def _status_mb(pid: int | str, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:  # no /proc, or the process ended
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: since exec, not inherited from a fork)."""
    peak = _status_mb("self", "VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return round(peak, 1)


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of one process now (0 once it ended)."""
    return _status_mb(pid, "VmRSS") or 0.0


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (the service's detector process)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # it ended meanwhile
        children = []
    return rss_mb(pid) + sum(tree_rss_mb(int(child)) for child in children)
