"""Resident memory and CPU time of processes, from /proc (Linux), for run summaries and
benchmarks."""

from __future__ import annotations

import os
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


def cpu_s(pid: int | str = "self") -> float:
    """CPU time (user + system) a process has used so far, in seconds (0 once it ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime and stime, fields 14 and 15


def children_cpu_s() -> float:
    """CPU time of this process's running children and their descendants (a server started
    here, for a benchmark to tell its cost from the client's)."""

    def tree(pid: str) -> float:
        kids = []
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                kids += (task / "children").read_text().split()
        except OSError:  # it ended meanwhile
            pass
        return sum(cpu_s(k) + tree(k) for k in kids)

    return tree(str(os.getpid()))
