"""Connected components of a mask larger than memory, block by block, numbered as in memory.

Out-of-core cleft detection thresholds a probability map that never fits in memory and still
has to give each cleft one id. Connected components, unlike a watershed, need no halo: a
component is the union of the pieces each block sees, joined where pieces of two blocks touch.

1. :func:`local_components` labels one block's core (26-connected in 3D, 8 in 2D, as
   :func:`~cseg_monai.transforms.clefts.cleft_components`), makes the ids unique over the
   volume (:func:`~cseg_monai.postprocessing.block_instances.offset_labels`: the block number
   in the upper 32 bits) and records each piece's voxel count and first voxel (its smallest
   raster index in the whole volume);
2. :func:`touching_pairs` reads the block's core grown by one voxel on every side from the
   array of unique ids and lists the pairs of different ids that touch (one of the 13 forward
   neighbour offsets in 3D, 4 in 2D): these only occur across block borders;
3. :func:`merge_components` joins touching pieces (connected components of the pair graph),
   sums their sizes, drops components under ``min_size`` voxels, and numbers the rest
   1..N in the raster order of their first voxel.

``scipy.ndimage.label`` numbers components in the raster order of their first voxel too, so the
ids equal those of whole-volume labelling, voxel for voxel, whatever the blocks (tested).
dask-image's ``ndmeasure.label`` does steps 1-3 as one Dask graph, but numbers the components
by block, cannot drop small components without a second whole-volume pass, and cannot resume
an interrupted run from the blocks already done; this module gives the three steps as block
tasks for :class:`~cseg_monai.data.block_store.BlockStore` runs.

Example:
    >>> mask = np.zeros((1, 4, 6), bool); mask[0, 1, 1:5] = True; mask[0, 3, 0] = True
    >>> shape, cores = mask.shape, [((0, 1), (0, 4), (0, 3)), ((0, 1), (0, 4), (3, 6))]
    >>> raw, tables = np.zeros(shape, np.uint64), []
    >>> for k, core in enumerate(cores):
    ...     box = tuple(slice(a, b) for a, b in core)
    ...     raw[box], table = local_components(mask[box], core, shape, k)
    ...     tables.append(table)
    >>> pairs = np.concatenate([touching_pairs(raw, core) for core in cores])
    >>> keys, values = merge_components(tables, pairs)
    >>> from cseg_monai.postprocessing.block_instances import relabel
    >>> relabel(raw, keys, values)[0].tolist() == ndimage.label(mask[0], np.ones((3, 3)))[0].tolist()
    True
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cseg_monai.postprocessing.block_instances import offset_labels

__all__ = ["forward_offsets", "local_components", "merge_components", "touching_pairs"]

Box = tuple[tuple[int, int], ...]


def forward_offsets(ndim: int) -> list[tuple[int, ...]]:
    """The neighbour offsets of full connectivity that come later in raster order (13 in 3D, 4 in 2D).

    Example:
        >>> len(forward_offsets(3)), forward_offsets(2)
        (13, [(0, 1), (1, -1), (1, 0), (1, 1)])
    """
    return [d for d in itertools.product((-1, 0, 1), repeat=ndim) if d > (0,) * ndim]


def local_components(mask: np.ndarray, core: Box, shape: Sequence[int], block_index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Label the pieces of ``mask`` (the block's core) with ids unique over the volume.

    Args:
        mask: the core's foreground, of the core's shape.
        core: where the core lies in the volume.
        shape: the volume's shape.
        block_index: the block's number (upper 32 bits of its ids).

    Returns:
        ``(ids, table)``: uint64 ids of the core (0 background) and ``{"ids", "counts", "first"}``:
        each piece's id, voxel count and smallest raster index in the volume.

    Raises:
        ValueError: a mask of another shape than the core.
    """
    mask = np.asarray(mask, dtype=bool)
    core_shape = tuple(b - a for a, b in core)
    if mask.shape != core_shape or len(core) != len(shape):
        raise ValueError(f"mask of shape {mask.shape} for a core {core} of a volume {tuple(shape)}")
    local, n = ndimage.label(mask, np.ones((3,) * mask.ndim, bool))
    if n == 0:
        empty = np.zeros(0, np.uint64)
        return np.zeros(core_shape, np.uint64), {"ids": empty, "counts": np.zeros(0, np.int64), "first": np.zeros(0, np.int64)}
    flat = local.ravel()
    values, first_local, counts = np.unique(flat, return_index=True, return_counts=True)
    keep = values > 0
    coords = np.unravel_index(first_local[keep], core_shape)
    first = np.ravel_multi_index(tuple(c + a for c, (a, _) in zip(coords, core)), tuple(int(s) for s in shape))
    ids = offset_labels(values[keep], block_index)
    return offset_labels(local, block_index), {"ids": ids, "counts": counts[keep].astype(np.int64), "first": first.astype(np.int64)}


def touching_pairs(ids: Any, core: Box) -> np.ndarray:
    """Pairs of different non-zero ids that touch, among the voxels of ``core`` grown by one on every side.

    Args:
        ids: the volume's unique ids (array-like with box reads: numpy, zarr); its shape bounds the growth.
        core: the block's core.

    Returns:
        ``(P, 2)`` uint64 pairs, each once.
    """
    shape = tuple(int(s) for s in ids.shape)
    box = tuple((max(a - 1, 0), min(b + 1, n)) for (a, b), n in zip(core, shape))
    part = np.asarray(ids[tuple(slice(a, b) for a, b in box)])
    if not part.any():
        return np.zeros((0, 2), np.uint64)
    found = []
    for d in forward_offsets(part.ndim):
        a = part[tuple(slice(max(-s, 0), n - max(s, 0)) for s, n in zip(d, part.shape))]
        b = part[tuple(slice(max(s, 0), n - max(-s, 0)) for s, n in zip(d, part.shape))]
        touch = (a != 0) & (b != 0) & (a != b)
        if touch.any():
            found.append(np.stack([a[touch], b[touch]], axis=1))
    if not found:
        return np.zeros((0, 2), np.uint64)
    pairs = np.sort(np.concatenate(found), axis=1)
    return np.unique(pairs, axis=0).astype(np.uint64)


def merge_components(tables: Sequence[dict[str, np.ndarray]], pairs: np.ndarray, min_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Join touching pieces into components and number them 1..N by their first voxel.

    Args:
        tables: the :func:`local_components` tables of every block.
        pairs: the :func:`touching_pairs` of every block.
        min_size: components of fewer voxels become background (0).

    Returns:
        ``(keys, values)``: sorted piece ids and their final ids, for :func:`relabel`.

    Raises:
        ValueError: a pair naming an id that no table holds.
    """
    if int(min_size) < 0:
        raise ValueError(f"min_size must be >= 0 voxels, got {min_size}")
    ids = np.concatenate([np.asarray(t["ids"], np.uint64) for t in tables]) if tables else np.zeros(0, np.uint64)
    counts = np.concatenate([np.asarray(t["counts"], np.int64) for t in tables]) if tables else np.zeros(0, np.int64)
    first = np.concatenate([np.asarray(t["first"], np.int64) for t in tables]) if tables else np.zeros(0, np.int64)
    order = np.argsort(ids)
    ids, counts, first = ids[order], counts[order], first[order]
    n = len(ids)
    if n == 0:
        return ids, np.zeros(0, np.uint32)
    pairs = np.asarray(pairs, np.uint64).reshape(-1, 2)
    pos = np.searchsorted(ids, pairs)
    if pairs.size and (pos.max() >= n or not np.array_equal(ids[pos], pairs)):
        raise ValueError("touching pairs name ids that no block table holds (a block written by another run?)")
    graph = coo_matrix((np.ones(len(pos), np.int8), (pos[:, 0], pos[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    size = np.bincount(comp, weights=counts).astype(np.int64)
    start = np.full(size.shape, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(start, comp, first)
    kept = np.flatnonzero(size >= max(int(min_size), 1))
    final = np.zeros(len(size), np.uint32)
    final[kept[np.argsort(start[kept], kind="stable")]] = np.arange(1, len(kept) + 1, dtype=np.uint32)
    return ids, final[comp]
