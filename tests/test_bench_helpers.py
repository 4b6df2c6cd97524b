"""The benchmarks' peak-memory meter: the kernel's reset peak, and the sampling fallback."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.helpers import PeakRss, rss_mb


@pytest.mark.parametrize("kernel", [True, False])
def test_peak_rss_sees_memory_freed_before_the_block_ends(kernel):
    before = rss_mb()
    with PeakRss(kernel=kernel) as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        time.sleep(0.05)  # the sampler wakes every 5 ms
        del block
    assert memory.peak - before > 48, (before, memory.peak)
    assert rss_mb() < memory.peak  # freed again: only a peak meter still sees it
    with PeakRss(kernel=kernel) as quiet:  # a second block starts from today's RSS, not the old peak
        pass
    assert quiet.peak < memory.peak - 32
