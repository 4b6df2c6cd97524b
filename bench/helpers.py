"""What the benchmark programs share: a process's resident memory (now, and its peak over a
block) and a free loopback port for a server under test."""

from __future__ import annotations

import os
import socket
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process now, in MB (Linux /proc)."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _high_water_mb() -> float:
    """The kernel's peak RSS of this process since it was last reset (VmHWM, Linux /proc)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


class PeakRss:
    """The highest RSS of this process while the block runs. Where Linux lets the peak be reset
    (/proc/self/clear_refs), the kernel keeps it and nothing runs beside the block: a sampling
    thread woken every few milliseconds took CPU from the model on 2 cores and slowed what it timed.
    Elsewhere, RSS is sampled every few milliseconds."""

    def __init__(self, every_s: float = 0.005, kernel: bool = True):
        self.every, self.kernel, self.peak, self._stop = every_s, kernel, 0.0, threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(self.every)

    def __enter__(self) -> "PeakRss":
        self.peak = rss_mb()
        try:
            if not self.kernel:
                raise OSError("sampling asked for")
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # resets VmHWM to the current RSS
            _high_water_mb()
        except (OSError, StopIteration):
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            self.peak = max(self.peak, _high_water_mb())
        else:
            self._stop.set()
            self._thread.join()
        self.peak = max(self.peak, rss_mb())
