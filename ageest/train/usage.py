"""What one fold costs: wall time, CPU time and peak memory, true whatever the job layout."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, replace


def process_start() -> float:
    """Unix time this process started (from /proc; now where /proc is missing)."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
        return time.time() - up + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


def _cpu_seconds() -> float:
    # This process's threads, plus children it has waited for (the plain pipeline's DataLoader workers).
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class FoldUsage:
    """Started when a fold starts; `figures()` gives its CPU seconds and peak RSS in MB.

    The peak is the fold's own where the kernel lets a process reset its RSS high-water mark
    (/proc/self/clear_refs): then `peak_rss_scope` is 'fold'. Elsewhere it is getrusage's ru_maxrss,
    the process's peak since it started, so in a job that trains several folds a later fold's
    figure is the highest of it and every fold before it: `peak_rss_scope` is 'process'.
    """

    start_wall: float
    start_cpu: float
    scope: str

    @classmethod
    def start(cls) -> "FoldUsage":
        return cls(time.perf_counter(), _cpu_seconds(), "fold" if _reset_peak_rss() else "process")

    def wall_seconds(self) -> float:
        return time.perf_counter() - self.start_wall

    def cpu_seconds(self) -> float:
        return _cpu_seconds() - self.start_cpu

    def stamp(self, state):
        """`state` (a FoldState) with this run's wall and CPU seconds added to its earlier runs'."""
        return replace(state, attempt_seconds=[*state.attempt_seconds, self.wall_seconds()],
                       attempt_cpu_seconds=[*state.attempt_cpu_seconds, self.cpu_seconds()])

    def figures(self) -> dict:
        return {"peak_rss_mb": round(_peak_rss_mb(), 1), "peak_rss_scope": self.scope}
