"""Instances of a volume larger than memory: segment blocks with a halo, stitch them by overlap.

A watershed + multicut needs the whole object in view, not the whole volume. Out-of-core
instance segmentation therefore runs :func:`~cseg_monai.postprocessing.instances.segment_instances`
on each block's core plus a halo, and then gives one id to what two neighbouring blocks both
saw (the torch-em / elf recipe of overlap-based stitching, with the graph part done by SciPy):

1. each block keeps the ids of its core, made unique over the volume by
   :func:`offset_labels` (block number in the upper 32 bits of a ``uint64``), and its
   segmentation of the halo where it reaches into a neighbour's core;
2. :func:`overlap_pairs` matches the block's ids there with the neighbour's own ids over the
   same voxels: two ids overlapping with IoU > ``min_iou`` (0.5 by default, so an id matches
   at most one id of the other block) are one object when the neighbour, looking back across
   the same border, matches them too (:func:`mutual_pairs`: blocks that disagree, one seeing
   two touching objects as one, cannot chain distinct objects together);
3. :func:`merge_table` joins matched ids into objects (connected components of the match
   graph), applies the size and background filters of ``InstanceParams`` to whole objects
   (the block segmentations run without them, so no fragment of a big object is dropped
   for being small), and numbers the objects 1..N in the order of their first voxel's block.

An object cut by a block border thus gets one id as long as the halo reaches across the
border far enough for both blocks to see the same object in the overlap: a halo of about one
object diameter (checked against whole-volume segmentation on a volume several blocks wide).

Example:
    >>> a = np.array([[1, 1, 0, 2]]); b = np.array([[5, 5, 0, 0]])
    >>> pairs = overlap_pairs(offset_labels(a, 0), offset_labels(b, 1))  # block 0's id 1 is block 1's id 5
    >>> [[int(i) >> BLOCK_ID_BITS, int(i) & 0xFFFFFFFF] for i in pairs[0]]
    [[1, 1], [2, 5]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cseg_monai.common.tiling import iter_blocks
from cseg_monai.postprocessing.instance_params import InstanceParams
from cseg_monai.postprocessing.instances import major_axis_from_moments, object_moments, segment_instances

__all__ = [
    "BLOCK_ID_BITS",
    "id_counts",
    "merge_table",
    "mutual_pairs",
    "offset_labels",
    "overlap_pairs",
    "relabel",
    "segment_block",
    "segment_in_blocks",
    "segment_one_block",
    "shape_stats",
    "stitch_pairs",
]

Box = tuple[tuple[int, int], ...]

#: Local ids of one block use the lower 32 bits of a ``uint64``; the block's number + 1 the rest.
BLOCK_ID_BITS = 32


def offset_labels(local: np.ndarray, block_index: int) -> np.ndarray:
    """Block-local ids (0 = background) made unique over the volume as ``uint64``.

    Raises:
        ValueError: negative or too large ids, a negative block index.
    """
    lab = np.asarray(local)
    if block_index < 0:
        raise ValueError(f"block_index must be >= 0, got {block_index}")
    if lab.size and (lab.min() < 0 or int(lab.max()) >= 1 << BLOCK_ID_BITS):
        raise ValueError(f"block-local ids must lie in [0, 2**{BLOCK_ID_BITS}), got {lab.min()}..{lab.max()}")
    out = lab.astype(np.uint64)
    base = np.uint64((block_index + 1) << BLOCK_ID_BITS)
    return np.where(out > 0, out + base, np.uint64(0))


def overlap_pairs(a: np.ndarray, b: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """Pairs ``(id in a, id in b)`` of non-zero ids whose overlap over these voxels has IoU > ``min_iou`` (1: equal).

    Args:
        a / b: two labelings of the same voxels (``uint64`` ids from two blocks).
        min_iou: in ``(0, 1]``; from 0.5 on an id matches at most one id of the other labeling.

    Returns:
        ``(K, 2)`` ``uint64``, sorted.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"labelings of different shapes {a.shape} and {b.shape}")
    if not 0.0 < float(min_iou) <= 1.0:
        raise ValueError(f"min_iou must lie in (0, 1], got {min_iou}")
    a, b = a.reshape(-1).astype(np.uint64), b.reshape(-1).astype(np.uint64)
    ids_a, size_a = np.unique(a[a > 0], return_counts=True)
    ids_b, size_b = np.unique(b[b > 0], return_counts=True)
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), np.uint64)
    pairs, inter = np.unique(np.stack([a[both], b[both]], axis=1), axis=0, return_counts=True)
    sa = size_a[np.searchsorted(ids_a, pairs[:, 0])]
    sb = size_b[np.searchsorted(ids_b, pairs[:, 1])]
    iou = inter / (sa + sb - inter)
    return pairs[iou > float(min_iou)] if float(min_iou) < 1.0 else pairs[iou >= 1.0]


def mutual_pairs(pairs: np.ndarray) -> np.ndarray:
    """The pairs matched from both sides: ``(a, b)`` where ``(b, a)`` was matched too.

    :func:`stitch_pairs` matches a block's halo ids with its neighbour's core ids, in both
    directions across every border. Two blocks that disagree (one sees two touching objects as
    one) would chain distinct objects together through their neighbours; an id pair kept only when
    both blocks agree cannot (ids seen only in a halo own no voxels and need no pair).

    Example:
        >>> mutual_pairs(np.array([[1, 2], [2, 1], [1, 3]], np.uint64)).tolist()
        [[1, 2]]
    """
    p = np.asarray(pairs, dtype=np.uint64).reshape(-1, 2)
    if not len(p):
        return p
    forward = p[p[:, 0] < p[:, 1]]
    backward = p[p[:, 0] > p[:, 1]][:, ::-1]
    both = np.intersect1d(forward.view([("a", np.uint64), ("b", np.uint64)]).ravel(), backward.copy().view([("a", np.uint64), ("b", np.uint64)]).ravel())
    return both.view(np.uint64).reshape(-1, 2)


def id_counts(labels: np.ndarray, background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero ids of ``labels``, their voxel counts, and how many of those lie in ``background``.

    Example:
        >>> id_counts(np.array([0, 7, 7, 9]), np.array([0, 1, 0, 0], bool))
        (array([7, 9]), array([2, 1]), array([1, 0]))
    """
    lab = np.asarray(labels).reshape(-1)
    ids, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    bg = np.zeros(len(ids), np.int64)
    if background is not None:
        mask = np.asarray(background, dtype=bool).reshape(-1)
        if mask.shape != lab.shape:
            raise ValueError(f"background of {mask.size} voxels for labels of {lab.size}")
        bg = np.bincount(inverse[mask], minlength=len(ids))
    keep = ids != 0
    return ids[keep], counts[keep].astype(np.int64), bg[keep].astype(np.int64)


def merge_table(
    ids: np.ndarray,
    counts: np.ndarray,
    pairs: np.ndarray,
    background_counts: np.ndarray | None = None,
    min_size: int = 0,
    max_size: int | None = None,
    shape_stats: Mapping[str, np.ndarray] | None = None,
    min_major_axis: float = 0.0,
    max_major_axis: float | None = None,
    edge_min_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Final ids of the blocks' core ids: matched ids joined, objects filtered, numbered 1..N.

    The filters run in :func:`~cseg_monai.postprocessing.instances.filter_instances`' order on
    whole objects: size and background, then the major axis (from the summed moments of the
    pieces), then edge slivers (among the objects left, against the median of those clear of
    the Y / X edges of the volume).

    Args:
        ids: every core id of every block (unique, ``uint64``).
        counts: their voxel counts; ``background_counts``: how many of them lie in the background.
        pairs: matched ids (:func:`overlap_pairs`); ids seen only in a halo may appear (they link
            core ids but own no voxels).
        min_size / max_size: object size limits in voxels, as ``InstanceParams``; an object lying
            mostly in the background is removed too, as :func:`filter_instances` does.
        shape_stats: per core id, aligned with ``ids``: ``first`` ``(K, d)`` and ``second``
            ``(K, d, d)`` moment sums (:func:`~cseg_monai.postprocessing.instances.object_moments`,
            volume coordinates) and ``edge`` ``(K,)`` (the piece touches the volume's Y / X edge);
            needed by the two filters below.
        min_major_axis / max_major_axis / edge_min_fraction: as ``InstanceParams``.

    Returns:
        ``(keys, values)``: the sorted core ids and their final ids (``uint32``; 0 = removed).

    Example:
        >>> keys, values = merge_table(np.array([11, 12, 21], np.uint64), np.array([5, 1, 4]), np.array([[11, 21]], np.uint64), min_size=2)
        >>> keys.tolist(), values.tolist()
        ([11, 12, 21], [1, 0, 1])
    """
    ids = np.asarray(ids, dtype=np.uint64)
    counts = np.asarray(counts, dtype=np.int64)
    order = np.argsort(ids)
    ids, counts = ids[order], counts[order]
    bg = np.zeros(len(ids), np.int64) if background_counts is None else np.asarray(background_counts, dtype=np.int64)[order]
    if len(ids) != len(counts) or len(bg) != len(ids):
        raise ValueError(f"ids ({len(ids)}), counts ({len(counts)}) and background counts ({len(bg)}) differ in length")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("core ids must be unique")
    shape_filters = min_major_axis > 0 or max_major_axis is not None or edge_min_fraction > 0
    if shape_filters and shape_stats is None:
        raise ValueError("the major-axis and edge-sliver filters need the pieces' shape_stats (first, second, edge)")
    pairs = np.asarray(pairs, dtype=np.uint64).reshape(-1, 2)
    nodes = np.union1d(ids, pairs.reshape(-1))
    n = len(nodes)
    graph = coo_matrix((np.ones(len(pairs)), (np.searchsorted(nodes, pairs[:, 0]), np.searchsorted(nodes, pairs[:, 1]))), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    comp = component[np.searchsorted(nodes, ids)]
    n_comp = int(component.max()) + 1 if n else 0
    size = np.bincount(comp, weights=counts, minlength=n_comp)
    in_bg = np.bincount(comp, weights=bg, minlength=n_comp)
    keep = (size >= int(min_size)) & (size > 0) & ~(in_bg > size / 2)
    if max_size is not None:
        keep &= size <= int(max_size)
    if shape_filters:
        assert shape_stats is not None
        keep &= _shape_filter(comp, n_comp, size, keep, {k: np.asarray(v)[order] for k, v in shape_stats.items()},
                              min_major_axis, max_major_axis, edge_min_fraction)  # fmt: skip
    # number the kept objects by their smallest core id (block order, then local order)
    first = np.full(n_comp, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(first, comp, ids)
    kept = np.flatnonzero(keep)
    if len(kept) >= 1 << 32:
        raise ValueError(f"{len(kept)} objects do not fit uint32 ids")
    new_id = np.zeros(n_comp, np.uint32)
    new_id[kept[np.argsort(first[kept], kind="stable")]] = np.arange(1, len(kept) + 1, dtype=np.uint32)
    return ids, new_id[comp]


def _shape_filter(comp: np.ndarray, n_comp: int, size: np.ndarray, keep: np.ndarray, stats: Mapping[str, np.ndarray],
                  min_major_axis: float, max_major_axis: float | None, edge_min_fraction: float) -> np.ndarray:  # fmt: skip
    """Which objects pass the major-axis and edge-sliver filters (among those ``keep`` holds)."""
    passed = np.ones(n_comp, bool)
    if min_major_axis > 0 or max_major_axis is not None:
        first, second = np.asarray(stats["first"], np.float64), np.asarray(stats["second"], np.float64)
        d = first.shape[1]
        first_sum = np.stack([np.bincount(comp, weights=first[:, a], minlength=n_comp) for a in range(d)], axis=1)
        second_sum = np.zeros((n_comp, d, d))
        for a in range(d):
            for b in range(a, d):
                second_sum[:, a, b] = np.bincount(comp, weights=second[:, a, b], minlength=n_comp)
        lengths = major_axis_from_moments(size, first_sum, second_sum)
        passed &= ~((lengths < float(min_major_axis)) | ((lengths > float(max_major_axis)) if max_major_axis is not None else False))
    if edge_min_fraction > 0:
        left = keep & passed
        on_edge = np.bincount(comp, weights=np.asarray(stats["edge"], np.float64), minlength=n_comp) > 0
        interior = left & ~on_edge
        if interior.any():
            passed &= ~(on_edge & (size < edge_min_fraction * float(np.median(size[interior]))))
    return passed


def shape_stats(local_core: np.ndarray, core: Box, volume_shape: Sequence[int], spacing: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """What the major-axis and edge-sliver filters need of one block's pieces, in :func:`id_counts` order.

    Args:
        local_core: the core's block-local ids (non-negative integers, 0 = background).
        core: where the core lies in the volume; volume_shape: the volume's shape.
        spacing: the voxel size the filters measure in.

    Returns:
        ``first`` ``(K, d)``, ``second`` ``(K, d, d)`` (moment sums in volume coordinates) and
        ``edge`` ``(K,)`` (touches the volume's first or last Y or X plane), for the K non-zero ids in increasing order.
    """
    lab = np.asarray(local_core)
    count, first, second = object_moments(lab, spacing, origin=[a for a, _ in core])
    present = np.flatnonzero(count > 0)
    present = present[present > 0]
    edge = np.zeros(len(count), bool)
    for axis in (lab.ndim - 2, lab.ndim - 1):
        (a, b), n = core[axis], int(volume_shape[axis])
        for plane, at_edge in ((0, a == 0), (lab.shape[axis] - 1, b == n)):
            if at_edge:
                edge[np.unique(np.take(lab, plane, axis=axis))] = True
    return {"first": first[present], "second": second[present], "edge": edge[present]}


def segment_block(
    prob: np.ndarray,
    params: InstanceParams,
    spacing: Sequence[float] | None = None,
    boundary_channel: int = 0,
    foreground_channel: int | None = 1,
) -> np.ndarray:
    """:func:`segment_instances` on one block's ``(C, Z, Y, X)`` probabilities, without the object filters.

    The size, major-axis and edge-sliver filters apply to whole objects after stitching
    (:func:`merge_table`); a fragment of a big object cut by the block's box must not be dropped
    for being small or short.

    Returns:
        ``uint32`` block-local ids, 1..N.
    """
    p = np.asarray(prob, dtype=np.float32)
    boundary = np.clip(p[boundary_channel], 0.0, 1.0)
    foreground = None
    if foreground_channel is not None and params.mask_watershed:  # the background filter waits for whole objects (merge_table)
        foreground = p[foreground_channel] >= params.foreground_threshold
    unfiltered = params.replace(min_size=0, max_size=None, min_major_axis=0.0, max_major_axis=None, edge_min_fraction=0.0)
    return segment_instances(boundary, unfiltered, spacing=spacing, foreground=foreground)


def segment_one_block(
    prob_outer: np.ndarray,
    core: Box,
    outer: Box,
    neighbours: Sequence[Box],
    block_index: int,
    params: InstanceParams,
    spacing: Sequence[float] | None = None,
    boundary_channel: int = 0,
    foreground_channel: int | None = 1,
    volume_shape: Sequence[int] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Segment one block (its core plus halo) and keep what stitching needs.

    Args:
        prob_outer: ``(C, *outer shape)`` probabilities over ``outer``.
        core / outer: the block's core and the box read around it (inside the volume).
        neighbours: the cores of the other blocks that ``outer`` reaches into.
        block_index: the block's number (:func:`offset_labels`).
        params / spacing / boundary_channel / foreground_channel: as :func:`segment_block`.
        volume_shape: the volume's shape; with it, the table holds the pieces' :func:`shape_stats`
            (needed when ``params`` sets the major-axis or edge-sliver filter).

    Returns:
        The core's ids (``uint64``, unique over the volume) and a table: ``ids``, ``counts``,
        ``background`` (of the core), ``first`` / ``second`` / ``edge`` (with ``volume_shape``), ``regions`` ``(K, ndim, 2)`` (the part of each neighbour's
        core inside ``outer``) and ``halo_k``: this block's ids there.
    """
    local = segment_block(prob_outer, params, spacing, boundary_channel, foreground_channel)
    labels = offset_labels(local, block_index)
    inner = tuple(slice(c0 - o0, c1 - o0) for (c0, c1), (o0, _) in zip(core, outer))
    core_labels = labels[inner]
    background = None
    if foreground_channel is not None:
        background = np.asarray(prob_outer[foreground_channel])[inner] < params.foreground_threshold
    ids, counts, bg = id_counts(core_labels, background)
    table: dict[str, np.ndarray] = {"ids": ids, "counts": counts, "background": bg}
    if volume_shape is not None:
        table.update(shape_stats(local[inner], core, volume_shape, spacing))
    regions = []
    for other in neighbours:
        region = tuple((max(a, o0), min(b, o1)) for (a, b), (o0, o1) in zip(other, outer))
        if any(a >= b for a, b in region):
            continue
        table[f"halo_{len(regions)}"] = labels[tuple(slice(a - o0, b - o0) for (a, b), (o0, _) in zip(region, outer))]
        regions.append(region)
    table["regions"] = np.asarray(regions, dtype=np.int64).reshape(-1, len(core), 2)
    return core_labels, table


def stitch_pairs(table: Mapping[str, np.ndarray], read_core_labels: Callable[[Box], np.ndarray], min_iou: float = 0.5) -> np.ndarray:
    """Matched id pairs of one block's halo with its neighbours' core ids (:func:`segment_one_block`'s table).

    Args:
        table: the block's table.
        read_core_labels: the written core ids over a box of the volume.
        min_iou: as :func:`overlap_pairs`.
    """
    pairs = [np.zeros((0, 2), np.uint64)]
    for k, region in enumerate(np.asarray(table["regions"])):
        box = tuple((int(a), int(b)) for a, b in region)
        pairs.append(overlap_pairs(table[f"halo_{k}"], read_core_labels(box), min_iou))
    return np.concatenate(pairs)


def segment_in_blocks(
    prob: np.ndarray,
    params: InstanceParams,
    block_shape: Sequence[int],
    halo: Sequence[int],
    spacing: Sequence[float] | None = None,
    min_iou: float = 0.5,
    boundary_channel: int = 0,
    foreground_channel: int | None = 1,
) -> np.ndarray:
    """The whole procedure in memory (the reference that out-of-core inference follows pass by pass).

    Args:
        prob: ``(C, Z, Y, X)`` probabilities.
        params: the instance settings (every filter applies to whole objects).
        block_shape / halo: blocks and the context each one sees on every side.
        spacing / min_iou / boundary_channel / foreground_channel: as above.

    Returns:
        ``uint32`` instance ids 1..N.
    """
    shape = tuple(np.asarray(prob).shape[1:])
    blocks = list(iter_blocks(shape, tuple(block_shape), halo=tuple(halo)))
    cores = [b.core for b in blocks]
    raw = np.zeros(shape, np.uint64)
    tables = []
    for index, block in enumerate(blocks):
        neighbours = [c for c in cores if c != block.core]
        core_labels, table = segment_one_block(
            np.asarray(prob)[(slice(None),) + block.outer_slices], block.core, block.outer, neighbours, index, params, spacing,
            boundary_channel, foreground_channel, volume_shape=shape,
        )  # fmt: skip
        raw[block.core_slices] = core_labels
        tables.append(table)
    pairs = mutual_pairs(np.concatenate([stitch_pairs(t, lambda box: raw[tuple(slice(a, b) for a, b in box)], min_iou) for t in tables]))
    keys, values = merge_table(
        np.concatenate([t["ids"] for t in tables]), np.concatenate([t["counts"] for t in tables]), pairs,
        np.concatenate([t["background"] for t in tables]), params.min_size, params.max_size,
        {k: np.concatenate([t[k] for t in tables]) for k in ("first", "second", "edge")},
        params.min_major_axis, params.max_major_axis, params.edge_min_fraction,
    )  # fmt: skip
    return relabel(raw, keys, values)


def relabel(labels: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Map core ids to final ids with the :func:`merge_table` table (0 stays 0).

    Raises:
        ValueError: an id that the table does not know.
    """
    lab = np.asarray(labels, dtype=np.uint64)
    out = np.zeros(lab.shape, np.uint32)
    nz = lab > 0
    if not nz.any():
        return out
    pos = np.searchsorted(keys, lab[nz])
    pos_c = np.minimum(pos, len(keys) - 1)
    if len(keys) == 0 or not np.array_equal(keys[pos_c], lab[nz]):
        raise ValueError("labels hold ids that the merge table does not know (a block written by another run?)")
    out[nz] = values[pos_c]
    return out
