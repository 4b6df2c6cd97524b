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


class PeakRss:
    """The highest RSS of this process while the block runs, sampled every few milliseconds."""

    def __init__(self, every_s: float = 0.005):
        self.every, self.peak, self._stop = every_s, 0.0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(self.every)

    def __enter__(self) -> "PeakRss":
        self.peak = rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())
