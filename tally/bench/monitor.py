"""Memory and CPU of the stack's processes while the bench runs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psutil

from tally.stack import Children


def _postgres_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"}


def _tree_cpu(root: Any) -> float:
    """CPU seconds of a process, its reaped children and its live children."""
    times = root.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in root.children():
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return float(total)


class ProcessMonitor:
    """Peak RSS (sampled in a thread) and CPU time of the API, worker and relay processes."""

    def __init__(self, children: Children, interval: float = 0.2) -> None:
        self.children = children
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self.run_peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started: the stack may have failed before
            self._thread.join()

    def _roles(self) -> Iterator[tuple[str, Any]]:
        for name, process in self.children.processes.items():
            try:
                root = psutil.Process(process.pid)
                below = root.children(recursive=True)
            except psutil.Error:
                continue
            if name == "api":
                yield "api_master", root
                for child in below:
                    yield "api_worker", child
            else:
                role = "celery_worker" if name.startswith("worker") else name
                yield role, root
                for child in below:
                    yield role, child

    def sample(self) -> None:
        for role, process in self._roles():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            with self._lock:
                for peaks in (self.peaks, self.run_peaks):
                    if rss > peaks.get(process.pid, (role, 0))[1]:
                        peaks[process.pid] = (role, rss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    @staticmethod
    def by_role(peaks: dict[int, tuple[str, int]]) -> dict[str, float]:
        """The largest single process of each role, in MB."""
        out: dict[str, float] = {}
        for role, rss in peaks.values():
            out[role] = max(out.get(role, 0.0), round(rss / 2**20, 1))
        return out

    def cpu_by_process(self) -> dict[int, tuple[str, float]]:
        """CPU seconds used so far by each of the stack's processes, the PostgreSQL server
        and the broker (both may serve others too: run the bench on a quiet machine), with
        the role of each."""
        seconds: dict[int, tuple[str, float]] = {}

        def add(role: str, process: Any) -> None:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seconds[process.pid] = (role, times.user + times.system)

        for role, process in self._roles():
            add("api" if role.startswith("api") else role, process)
        for process in psutil.process_iter(["name", "ppid"]):
            name = process.info["name"] or ""
            if name == "postgres" and process.info["ppid"] not in _postgres_pids():
                # The postmaster: the whole server (backends, WAL writer, checkpointer,
                # autovacuum), counting backends that already exited (their CPU is the
                # postmaster's reaped children's): connections opened and closed during a
                # run cost real CPU too.
                with contextlib.suppress(psutil.Error):
                    seconds[process.pid] = ("postgres", _tree_cpu(process))
            elif name == "redis-server" or "beam.smp" in name:
                add("broker", process)
        return seconds

    @staticmethod
    def cpu_delta(
        before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
    ) -> dict[str, float]:
        """CPU seconds per role between two snapshots (a process that ended in between is
        not counted: PostgreSQL backends of closed connections are the usual case)."""
        totals: dict[str, float] = {}
        for pid, (role, seconds) in after.items():
            spent = seconds - before.get(pid, (role, 0.0))[1]
            totals[role] = totals.get(role, 0.0) + spent
        return totals

    def pids(self, role: str) -> list[int]:
        """The ids of the stack's processes of one role (`api_worker`, `celery_worker`)."""
        return [process.pid for found, process in self._roles() if found == role]

    def take_run_peaks(self) -> dict[str, float]:
        with self._lock:
            peaks, self.run_peaks = self.run_peaks, {}
        return self.by_role(peaks)


class PeakRss:
    """The RSS of a few processes, sampled every `interval` seconds on a thread while inside
    the `with` block: `before` (at entry) and `peak`, in MB, per process id."""

    def __init__(self, pids: list[int], interval: float = 0.01) -> None:
        self.before: dict[int, float] = {}
        self.peak: dict[int, float] = {}
        self._processes = [psutil.Process(pid) for pid in pids]
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-peaks", daemon=True)

    def _sample(self) -> dict[int, float]:
        seen = {}
        for process in self._processes:
            with contextlib.suppress(psutil.Error):
                seen[process.pid] = round(process.memory_info().rss / 2**20, 1)
        return seen

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for pid, mb in self._sample().items():
                self.peak[pid] = max(mb, self.peak.get(pid, mb))

    def __enter__(self) -> PeakRss:
        self.before = self._sample()
        self.peak = dict(self.before)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for pid, mb in self._sample().items():
            self.peak[pid] = max(mb, self.peak.get(pid, mb))

    def summary(self) -> dict[str, float]:
        """The largest process before and at its peak, and the largest growth of any, in MB."""
        growth = [self.peak[pid] - mb for pid, mb in self.before.items() if pid in self.peak]
        return {
            "before_mb": max(self.before.values(), default=0.0),
            "peak_mb": max(self.peak.values(), default=0.0),
            "growth_mb": round(max(growth, default=0.0), 1),
        }
