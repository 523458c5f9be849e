"""ArrayCache: keyed on array bytes and an extra key, least recently used evicted first."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.common.caching import ArrayCache, array_digest


def test_hits_misses_and_eviction():
    cache, calls = ArrayCache(size=2), []

    def compute(v):
        return lambda: calls.append(v) or v

    a, b, c = np.zeros(3), np.ones(3), np.arange(3.0)
    assert cache.get((a,), "k", compute(1)) == 1 and cache.get((a.copy(),), "k", compute(9)) == 1  # same bytes: a hit
    assert cache.get((a,), "other key", compute(2)) == 2  # another extra key: a miss
    assert cache.get((b,), "k", compute(3)) == 3  # evicts (a, "k"), the least recently used
    assert len(cache) == 2 and calls == [1, 2, 3]
    assert cache.get((a,), "k", compute(4)) == 4
    cache.clear()
    assert len(cache) == 0
    assert array_digest([c]) != array_digest([c.astype(np.float32)])  # dtype is part of the key
    with pytest.raises(ValueError, match="positive integer"):
        ArrayCache(0)
