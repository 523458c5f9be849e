"""Exact percentiles of a volume larger than memory.

The instance bundle scales each input between its 1st and 99.8th intensity percentiles
(MONAI's ``ScaleIntensityRangePercentilesd``, i.e. ``numpy.percentile`` with linear
interpolation). ``dask.array.percentile`` merges per-chunk percentiles and is only approximate,
so out-of-core inference would not equal in-memory inference. :func:`exact_percentiles` finds
the order statistics exactly instead, by narrowing: one pass for the minimum and maximum, then
per pass a histogram of the range still holding the wanted rank, until the bin that holds it is
small enough to gather (or holds one value), all through ``dask.array`` reductions whose
memory is bounded by a chunk, never the volume.

Example:
    >>> import dask.array as da, numpy as np
    >>> x = np.random.default_rng(0).integers(0, 7, (20, 30, 30)).astype(np.float32)
    >>> got = exact_percentiles(da.from_array(x, chunks=(5, 30, 30)), (1.0, 99.8), bins=8, max_gather=50)
    >>> bool(np.array_equal(got, np.percentile(x, (1.0, 99.8))))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np

__all__ = ["exact_percentiles", "kth_smallest"]


def _edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """Increasing edges of half-open bins covering the closed range ``[lo, hi]`` (``lo < hi``)."""
    top = np.nextafter(hi, np.inf)
    edges = np.unique(np.linspace(lo, top, bins + 1))
    if len(edges) < 3:  # lo and hi are neighbouring floats: split them
        edges = np.array([lo, hi, top])
    return edges


def kth_smallest(array: da.Array, ks: Sequence[int], bins: int = 4096, max_gather: int = 1 << 22, name: str = "the volume") -> np.ndarray:
    """The ``k``-th smallest values (0-based) of ``array``, exactly, for each ``k`` of ``ks``.

    Args:
        array: any ``dask.array`` (any shape, a real dtype).
        ks: ranks in ``[0, array.size)``.
        bins: histogram bins per narrowing pass.
        max_gather: a bin with at most this many values is gathered and sorted.
        name: how errors name the volume.

    Raises:
        ValueError: an empty array, NaN or infinite values, or a rank out of range.
    """
    n = int(array.size)
    ks = [int(k) for k in ks]
    if n == 0:
        raise ValueError(f"{name}: is empty")
    if any(not 0 <= k < n for k in ks):
        raise ValueError(f"ranks {ks} must lie in [0, {n})")
    if bins < 2 or max_gather < 1:
        raise ValueError(f"bins ({bins}) must be >= 2 and max_gather ({max_gather}) >= 1")
    x = array.astype(np.float64)  # any shape: the reductions and masks below need no flattening
    lo, hi = (float(v) for v in dask.compute(x.min(), x.max()))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    # per rank: the closed range [lo, hi] that holds it and how many values lie below lo
    state = {k: [lo, hi, 0] for k in set(ks)}
    found: dict[int, float] = {}
    passes = 0
    while len(found) < len(state):
        todo = [k for k in state if k not in found]
        for k in todo:
            a, b, _ = state[k]
            if a == b:
                found[k] = a
        todo = [k for k in todo if k not in found]
        if not todo:
            break
        if passes:  # tighten each range to the values it holds: a bin of one repeated value ends here
            inside = [x[(x >= state[k][0]) & (x <= state[k][1])] for k in todo]
            bounds = dask.compute(*[(v.min(), v.max()) for v in inside])
            for k, (a, b) in zip(todo, bounds):
                state[k][0], state[k][1] = float(a), float(b)
                if a == b:
                    found[k] = float(a)
            todo = [k for k in todo if k not in found]
            if not todo:
                break
        passes += 1
        edges = {k: _edges(state[k][0], state[k][1], bins) for k in todo}
        # a last bin beyond the range catches what lies above it (numpy closes its last bin)
        hists = dask.compute(*[da.histogram(x, bins=np.append(edges[k], np.nextafter(edges[k][-1], np.inf)))[0][:-1] for k in todo])
        gather: list[tuple[int, float, float]] = []
        for k, hist in zip(todo, hists):
            below = state[k][2]
            j = int(np.searchsorted(below + np.cumsum(hist), k, side="right"))
            e = edges[k]
            # bin j is [e_j, e_j+1): the closed range [e_j, the float below e_j+1]
            state[k] = [float(e[j]), float(np.nextafter(e[j + 1], -np.inf)), below + int(hist[:j].sum())]
            if int(hist[j]) <= max_gather:
                gather.append((k, float(e[j]), float(e[j + 1])))
        if gather:
            parts = dask.compute(*[x[(x >= a) & (x < b)] for _, a, b in gather])
            for (k, _, _), values in zip(gather, parts):
                found[k] = float(np.sort(values)[k - state[k][2]])
    return np.array([found[k] for k in ks], dtype=np.float64)


def exact_percentiles(array: da.Array, q: Sequence[float], bins: int = 4096, max_gather: int = 1 << 22, name: str = "the volume") -> np.ndarray:
    """``numpy.percentile(array, q)`` (linear interpolation) of a ``dask.array``, exactly.

    Args:
        array: the values (any shape).
        q: percentiles in ``[0, 100]``.
        bins / max_gather / name: as :func:`kth_smallest`.

    Raises:
        ValueError: a percentile outside ``[0, 100]``, an empty array, NaN or infinity.
    """
    qs = [float(v) for v in q]
    if any(not 0.0 <= v <= 100.0 for v in qs):
        raise ValueError(f"percentiles must lie in [0, 100], got {qs}")
    n = int(array.size)
    if n == 0:
        raise ValueError(f"{name}: is empty")
    positions = [v / 100.0 * (n - 1) for v in qs]
    ranks = sorted({int(np.floor(p)) for p in positions} | {min(int(np.floor(p)) + 1, n - 1) for p in positions})
    values = dict(zip(ranks, kth_smallest(array, ranks, bins, max_gather, name)))
    out = []
    for p in positions:
        k0 = int(np.floor(p))
        k1 = min(k0 + 1, n - 1)
        v0, v1 = values[k0], values[k1]
        out.append(v0 + (v1 - v0) * (p - k0))  # numpy's "linear" rule
    return np.asarray(out, dtype=np.float64)
