"""Blocks with a halo: cover an N-d grid by cores and cut each one with context around it.

Used wherever a volume is processed piece by piece with results stitched exactly: the dense
CRF (halo clipped at the volume border), the dense centre-voxel inferer (halo reaching past the
border, reflect-padded by the caller) and out-of-core inference.

Example:
    >>> blocks = list(iter_blocks((10, 7), (4, 7), halo=2))
    >>> [b.core for b in blocks]
    [((0, 4), (0, 7)), ((4, 8), (0, 7)), ((8, 10), (0, 7))]
    >>> blocks[1].outer, blocks[1].inner
    (((2, 10), (0, 7)), (slice(2, 6, None), slice(0, 7, None)))
    >>> fit_block_shape((64, 512, 512), halo=(0, 8, 8), max_voxels=1 << 22)
    (64, 171, 256)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["Block", "check_core", "fit_block_shape", "iter_blocks", "reflect_indices"]

Box = tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class Block:
    """One block: the ``core`` it produces and the ``outer`` box (core plus halo) it reads.

    Attributes:
        core: ``((start, stop), ...)`` per axis, inside the grid.
        outer: ``((start, stop), ...)`` per axis; outside the grid only where the halo is not
            clipped (``iter_blocks(..., clip=False)``).
    """

    core: Box
    outer: Box

    @property
    def core_slices(self) -> tuple[slice, ...]:
        """The core as slices of the whole grid."""
        return tuple(slice(a, b) for a, b in self.core)

    @property
    def outer_slices(self) -> tuple[slice, ...]:
        """The outer box as slices of the whole grid (only meaningful when clipped)."""
        return tuple(slice(a, b) for a, b in self.outer)

    @property
    def inner(self) -> tuple[slice, ...]:
        """The core as slices of the outer box (where to keep a block's result)."""
        return tuple(slice(c0 - o0, c1 - o0) for (c0, c1), (o0, _) in zip(self.core, self.outer))


def _per_axis(value: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int or {n} ints, got {value!r}")
    if isinstance(value, int):
        out = (int(value),) * n
    else:
        out = tuple(int(v) for v in value)
        if len(out) == 1:
            out *= n
    if len(out) != n:
        raise ValueError(f"{what} {tuple(value)} must have 1 or {n} entries")
    return out


def _halo_pairs(halo: int | Sequence, n: int) -> tuple[tuple[int, int], ...]:
    """``halo`` as (before, after) per axis: an int, N ints, or N (before, after) pairs."""
    if not isinstance(halo, (int, Sequence)) or isinstance(halo, (bool, str)):
        raise TypeError(f"halo must be an int, {n} ints or {n} (before, after) pairs, got {halo!r}")
    if isinstance(halo, int) or all(isinstance(h, int) and not isinstance(h, bool) for h in halo):
        pairs = tuple((h, h) for h in _per_axis(halo, n, "halo"))
    else:
        pairs = tuple((int(a), int(b)) for a, b in halo)
        if len(pairs) != n:
            raise ValueError(f"halo {halo!r} must have {n} (before, after) pairs")
    if any(a < 0 or b < 0 for a, b in pairs):
        raise ValueError(f"halo must not be negative, got {halo!r}")
    return pairs


def iter_blocks(
    shape: Sequence[int],
    block_shape: int | Sequence[int],
    halo: int | Sequence = 0,
    *,
    clip: bool = True,
) -> Iterator[Block]:
    """Blocks whose cores tile ``shape`` in C order, each with its halo.

    Args:
        shape: the grid's size per axis (every entry >= 1).
        block_shape: the core size per axis (an int for all axes); the last core along an axis
            may be smaller.
        halo: context per axis: an int, one int per axis, or one ``(before, after)`` pair per axis.
        clip: clip the outer box to the grid (the default); ``False`` lets it reach past the
            border, for callers that pad there.

    Yields:
        :class:`Block` s, cores disjoint and covering the grid.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"shape must be positive sizes, got {shape}")
    n = len(shape)
    core = _per_axis(block_shape, n, "block_shape")
    if any(c < 1 for c in core):
        raise ValueError(f"block_shape must be positive, got {block_shape!r}")
    pairs = _halo_pairs(halo, n)
    for starts in itertools.product(*(range(0, s, c) for s, c in zip(shape, core))):
        box = tuple((a, min(a + c, s)) for a, c, s in zip(starts, core, shape))
        outer = tuple((a - hb, b + ha) for (a, b), (hb, ha) in zip(box, pairs))
        if clip:
            outer = tuple((max(a, 0), min(b, s)) for (a, b), s in zip(outer, shape))
        yield Block(core=box, outer=outer)


def fit_block_shape(shape: Sequence[int], halo: int | Sequence, max_voxels: int) -> tuple[int, ...]:
    """The largest equal split of ``shape`` whose blocks, halo included, hold at most ``max_voxels``.

    The whole grid when it fits; otherwise the axis with the largest core is split into one more
    equal part, again and again, until a core plus its (clipped) halo fits or every core is one
    voxel wide.

    Args:
        shape: the grid's size per axis.
        halo: as for :func:`iter_blocks`.
        max_voxels: the most voxels one block with its halo may hold (>= 1).

    Returns:
        The core size per axis, for :func:`iter_blocks`.
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(max_voxels, bool) or not isinstance(max_voxels, int) or max_voxels < 1:
        raise ValueError(f"max_voxels must be a positive integer, got {max_voxels!r}")
    pairs = _halo_pairs(halo, len(shape))
    splits = [1] * len(shape)
    while True:
        core = [math.ceil(s / k) for s, k in zip(shape, splits)]
        if math.prod(min(c + hb + ha, s) for c, (hb, ha), s in zip(core, pairs, shape)) <= max_voxels:
            return tuple(core)
        axis = max(range(len(shape)), key=lambda a: core[a] if core[a] > 1 else -1)
        if core[axis] <= 1:
            return tuple(core)
        splits[axis] += 1


def reflect_indices(n: int, start: int, stop: int) -> np.ndarray:
    """Source indices of positions ``start .. stop - 1`` of an axis of length ``n`` under reflect padding.

    Mirrors without repeating the edge voxel (period ``2 * (n - 1)``), repeatedly where the
    range reaches further than ``n - 1`` beyond the axis; a length-1 axis is replicated. This
    is how an outer box that reaches past the border (``iter_blocks(..., clip=False)``) is read.

    Example:
        >>> reflect_indices(4, -3, 7).tolist()
        [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    if n < 1:
        raise ValueError(f"axis length must be >= 1, got {n}")
    idx = np.arange(start, stop, dtype=np.int64)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.remainder(idx, period)
    return np.where(idx >= n, period - idx, idx)


def check_core(core: Sequence[tuple[int, int]], shape: Sequence[int]) -> Box:
    """``core`` as int pairs, checked to be a non-empty box inside a grid of ``shape``.

    Example:
        >>> check_core([(0, 2), (1, 3)], (4, 4))
        ((0, 2), (1, 3))
    """
    out = tuple((int(a), int(b)) for a, b in core)
    if len(out) != len(shape) or any(not 0 <= a < b <= n for (a, b), n in zip(out, shape)):
        raise ValueError(f"core {out} is not a non-empty box inside the volume {tuple(shape)}")
    return out
