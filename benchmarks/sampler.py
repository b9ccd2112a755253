"""CPU seconds and memory of process trees, sampled in a background thread (psutil).

The server and the load client share this machine's cores, so both are watched. CPU over an
interval is interpolated between samples; it includes what members that already exited used
(their parents' reaped-children times), since runner's workers end with their sessions. Memory
is the tree's proportional set size (PSS): a worker forked from a zygote shares most of its
pages, and summing RSS would count them once per worker. Where PSS cannot be read, RSS.
The tree's root (for a server, the process that listens) is also recorded on its own: in
process isolation the sessions run in its grandchildren (workers forked by a zygote child).
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import psutil

INTERVAL = 0.2


@dataclass
class Series:
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)   # cumulative user+system seconds
    rss: list[int] = field(default_factory=list)     # bytes (PSS where readable)
    own: list[float] = field(default_factory=list)   # cumulative seconds of the root alone


class Usage(NamedTuple):
    cpu: float      # CPU seconds of the whole tree, reaped members included
    memory: int     # PSS bytes of the tree
    own_cpu: float  # CPU seconds of the root process alone (not its children)


def tree_usage(process: psutil.Process) -> Usage:
    """What a process tree (children of children included) has used so far."""
    cpu = own = 0.0
    memory = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            if member is process:
                own = times.user + times.system
            memory += _pss(member)
    return Usage(cpu, memory, own)


def _pss(member: psutil.Process) -> int:
    try:
        return int(member.memory_full_info().pss)
    except (AttributeError, psutil.AccessDenied):
        return int(member.memory_info().rss)


class Sampler:
    """Samples named process trees every `interval` seconds until stopped."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.series: dict[str, Series] = {}
        self._processes: dict[str, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, name: str, pid: int) -> None:
        """Start sampling `pid`'s tree as `name` (replacing what `name` watched before)."""
        with self._lock:
            self._processes[name] = psutil.Process(pid)
            self.series[name] = Series()
        self.sample()

    def forget(self, name: str) -> None:
        with self._lock:
            self._processes.pop(name, None)

    def sample(self) -> None:
        now = time.monotonic()
        with self._lock:
            watched = list(self._processes.items())
        for name, process in watched:
            try:
                usage = tree_usage(process)
            except psutil.Error:
                continue
            series = self.series[name]
            series.times.append(now)
            series.cpu.append(usage.cpu)
            series.rss.append(usage.memory)
            series.own.append(usage.own_cpu)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def cpu_at(self, name: str, when: float, own: bool = False) -> float:
        """Cumulative CPU seconds of `name`'s tree (`own`: of its root alone) at monotonic time
        `when`, linear between samples."""
        series = self.series[name]
        values = series.own if own else series.cpu
        if not series.times:
            return 0.0
        i = bisect.bisect_left(series.times, when)
        if i == 0:
            return values[0]
        if i >= len(series.times):
            return values[-1]
        t0, t1 = series.times[i - 1], series.times[i]
        c0, c1 = values[i - 1], values[i]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0) if t1 > t0 else c1

    def cpu_between(self, name: str, start: float, end: float, own: bool = False) -> float:
        return self.cpu_at(name, end, own) - self.cpu_at(name, start, own)

    def rss_peak(self, name: str, start: float, end: float) -> int:
        series = self.series[name]
        values = [r for t, r in zip(series.times, series.rss, strict=True) if start <= t <= end]
        return max(values, default=series.rss[-1] if series.rss else 0)

    def rss_now(self, name: str) -> int:
        self.sample()
        series = self.series[name]
        return series.rss[-1] if series.rss else 0

    def cpu_rate(self, name: str, seconds: float) -> float:
        """Share of one core `name` used over the last `seconds` (samples taken meanwhile)."""
        start = time.monotonic()
        self.sample()
        before = self.series[name].cpu[-1] if self.series[name].cpu else 0.0
        time.sleep(seconds)
        self.sample()
        after = self.series[name].cpu[-1] if self.series[name].cpu else 0.0
        return (after - before) / max(time.monotonic() - start, 1e-6)
