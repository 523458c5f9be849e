"""A small least-recently-used cache keyed on the bytes of numpy arrays.

Several Ignite metrics of one evaluator score the same pooled arrays (accuracy, F1, AP and
kappa; V_rand and V_info): the first computes, the others hit the cache.

Example:
    >>> cache = ArrayCache(size=2)
    >>> calls = []
    >>> f = lambda: calls.append(1) or 42
    >>> cache.get((np.arange(3),), "sum", f), cache.get((np.arange(3),), "sum", f), len(calls)
    (42, 42, 1)
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

__all__ = ["ArrayCache", "array_digest"]


def array_digest(arrays: Sequence[np.ndarray]) -> str:
    """A 128-bit digest of the shapes, dtypes and bytes of ``arrays``.

    Example:
        >>> array_digest([np.zeros(2)]) == array_digest([np.zeros(2)]) != array_digest([np.zeros(3)])
        True
    """
    digest = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(str((arr.shape, arr.dtype.str)).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


class ArrayCache:
    """Results of ``compute()`` keyed on input arrays and an extra key, the ``size`` most recent kept.

    Args:
        size: how many results to keep (>= 1).
    """

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        self.size = size
        self._items: collections.OrderedDict = collections.OrderedDict()

    def get(self, arrays: Sequence[np.ndarray], key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached result for ``(arrays, key)``, or ``compute()`` stored as it."""
        full = (array_digest(arrays), key)
        if full in self._items:
            self._items.move_to_end(full)
            return self._items[full]
        value = compute()
        self._items[full] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every result."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
