"""Instances from a boundary map: watershed supervoxels, region adjacency graph, graph partitioning.

The pipeline for touching cells or nuclei (Beier et al. 2017, as in PlantSeg):

1. :func:`watershed_supervoxels`: distance-transform watershed on the thresholded boundary
   map (seeds from smoothed distance maxima, anisotropic spacing honoured) -> an
   over-segmentation;
2. :func:`region_adjacency`: the region adjacency graph with, per edge, the mean boundary
   probability along the contact and the contact size;
3. a partition of the graph: :func:`multicut` (greedy additive edge contraction, then
   Kernighan-Lin refinement) on :func:`edge_costs` (log-odds with a boundary bias
   ``beta``, weighted by contact size), or :func:`mean_boundary_agglomeration` (merge the
   pair with the lowest mean boundary while it stays below a threshold);
4. :func:`filter_instances`: drop objects outside a size range, outside a range of major-axis
   lengths (:func:`major_axis_lengths`, physical units) or mostly in a background mask, then
   relabel consecutively.

:func:`segment_instances` runs the whole chain. The watershed, the graph and the solvers come
from ``python-elf`` on ``bioimage-cpp`` (both pip-installable); the agglomeration and the
filtering are ours.

Example:
    >>> from scipy import ndimage
    >>> truth = np.zeros((1, 40, 80), np.int64); truth[0, 5:35, 5:38] = 1; truth[0, 5:35, 42:75] = 2
    >>> boundary = ndimage.gaussian_filter((ndimage.morphological_gradient(truth, size=3) > 0).astype(float), 1)
    >>> labels = segment_instances(boundary / boundary.max(), InstanceParams(method="multicut", min_size=20))
    >>> int(labels.max())
    2
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

import bioimage_cpp as bic
import elf.segmentation.features as feats
import elf.segmentation.watershed as elf_ws
import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import relabel_sequential, watershed

from cseg_monai.common.checks import check_instance_ids, check_spacing
from cseg_monai.postprocessing.instance_params import METHODS, InstanceParams, check_filter_limits

__all__ = [
    "METHODS",
    "InstanceParams",
    "edge_costs",
    "edge_slivers",
    "check_filter_limits",
    "check_instance_ids",
    "filter_instances",
    "major_axis_from_moments",
    "major_axis_lengths",
    "mean_boundary_agglomeration",
    "object_moments",
    "multicut",
    "region_adjacency",
    "segment_instances",
    "watershed_supervoxels",
]

def _check_boundary(boundary: np.ndarray, name: str = "boundary map") -> np.ndarray:
    b = np.asarray(boundary)
    if b.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D (Y, X) or 3D (Z, Y, X), got shape {b.shape}")
    if b.size == 0:
        raise ValueError(f"{name} is empty (shape {b.shape})")
    if not np.issubdtype(b.dtype, np.floating):
        raise ValueError(f"{name} must hold probabilities (floating point), got dtype {b.dtype}")
    if not np.isfinite(b).all():
        raise ValueError(f"{name} has NaN or infinite values")
    if b.min() < -1e-6 or b.max() > 1 + 1e-6:
        raise ValueError(f"{name} must lie in [0, 1], found [{b.min():.4g}, {b.max():.4g}]")
    return b.astype(np.float32, copy=False)


def _spacing(spacing: Sequence[float] | None, ndim: int) -> list[float] | None:
    if spacing is None:
        return None
    return check_spacing(spacing, ndim, "spacing", max_anisotropy=None)


def watershed_supervoxels(
    boundary: np.ndarray,
    threshold: float = 0.5,
    sigma_seeds: float = 2.0,
    sigma_weights: float = 2.0,
    min_size: int = 50,
    spacing: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Distance-transform watershed over-segmentation of a boundary map (``uint64``, ids from 1).

    Args:
        boundary: boundary probabilities ``([Z,] Y, X)`` in [0, 1].
        threshold: voxels above it count as boundary for the distance transform.
        sigma_seeds: Gaussian smoothing of the distance map before taking its maxima as seeds
            (voxels); larger merges more seeds.
        sigma_weights: smoothing of the boundary map in the flooding weights.
        min_size: supervoxels smaller than this are merged into a neighbour.
        spacing: physical voxel size per axis (anisotropic distance transform), None = 1.
        mask: optional boolean foreground; voxels outside get id 0.
    """
    b = _check_boundary(boundary)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != b.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the boundary map {b.shape}")
    pitch = _spacing(spacing, b.ndim)
    if mask is not None:
        return _masked_watershed(b, mask, threshold, sigma_seeds, sigma_weights, int(min_size), pitch)
    seg, _ = elf_ws.distance_transform_watershed(
        b, threshold=threshold, sigma_seeds=sigma_seeds, sigma_weights=sigma_weights, min_size=int(min_size),
        pixel_pitch=pitch, mask=mask,
    )  # fmt: skip
    return seg.astype(np.uint64)


def _masked_watershed(
    b: np.ndarray, mask: np.ndarray, threshold: float, sigma_seeds: float, sigma_weights: float, min_size: int,
    pitch: list[float] | None, alpha: float = 0.9,
) -> np.ndarray:
    """The distance-transform watershed of :func:`watershed_supervoxels` flooded only inside ``mask``.

    ``elf``'s ``mask`` only blanks the result afterwards: seeds in the masked-out area flood into
    the objects across their boundaries, leaving one supervoxel made of pieces of every object's
    rim. Here seeds and flooding stay inside the mask, and mask components no seed reaches get
    their own id.
    """
    if not mask.any():
        return np.zeros(b.shape, np.uint64)
    dt = ndimage.distance_transform_edt(b <= threshold, sampling=pitch).astype(np.float32)
    dt[~mask] = 0.0
    if sigma_seeds:
        dt = ndimage.gaussian_filter(dt, sigma_seeds)
    peaks = np.zeros(b.shape, bool)
    coords = peak_local_max(dt, min_distance=1, exclude_border=False, labels=mask.astype(np.int32))
    peaks[tuple(coords.T)] = True
    seeds, _ = ndimage.label(peaks, structure=np.ones((3,) * b.ndim, bool))
    top = float(dt.max())
    dist = 1.0 - dt / top if top > 0 else np.ones_like(dt)
    smooth = ndimage.gaussian_filter(b, sigma_weights) if sigma_weights else b
    hmap = alpha * smooth + (1.0 - alpha) * dist
    seg = watershed(hmap, markers=seeds, mask=mask)
    if min_size > 1:  # merge small supervoxels into their neighbours: flood again from the large ones
        ids, counts = np.unique(seg, return_counts=True)
        small = ids[(counts < min_size) & (ids != 0)]
        if len(small) and len(small) < len(ids[ids != 0]):
            seg = watershed(hmap, markers=np.where(np.isin(seg, small), 0, seg), mask=mask)
    missed = mask & (seg == 0)  # mask components without a seed
    if missed.any():
        extra, _ = ndimage.label(missed)
        seg = np.where(missed, extra + seg.max(), seg)

    return relabel_sequential(seg)[0].astype(np.uint64)


def region_adjacency(segmentation: np.ndarray, boundary: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The region adjacency graph of ``segmentation`` with per-edge boundary statistics.

    Returns:
        ``(rag, uv_ids (E, 2), mean_boundary (E,), contact_size (E,))``; node ids are the
        segmentation ids (0 is a node too when present).
    """
    seg = np.asarray(segmentation)
    b = _check_boundary(boundary)
    if seg.shape != b.shape:
        raise ValueError(f"segmentation shape {seg.shape} differs from the boundary map {b.shape}")
    seg = seg.astype(np.uint64, copy=False)
    rag = feats.compute_rag(seg)
    uv = np.asarray(rag.uvIds(), dtype=np.int64)
    if len(uv) == 0:
        return rag, uv, np.zeros(0), np.zeros(0)
    f = feats.compute_boundary_features(rag, seg, b)
    return rag, uv, f[:, 0].astype(np.float64), f[:, -1].astype(np.float64)


def edge_costs(mean_boundary: np.ndarray, contact_size: np.ndarray | None = None, beta: float = 0.5) -> np.ndarray:
    """Multicut costs from boundary probabilities: ``log((1 - p) / p) + log((1 - beta) / beta)``.

    Positive costs are attractive (keep the regions together). With ``contact_size`` the costs
    are multiplied by the contact size over its maximum, so long shared boundaries weigh more.
    ``beta`` > 0.5 favours cutting (more objects), < 0.5 merging.

    Example:
        >>> edge_costs(np.array([0.1, 0.5, 0.9])).round(3).tolist()
        [2.197, 0.0, -2.197]
    """
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta}")
    p = np.clip(np.asarray(mean_boundary, dtype=np.float64), 1e-6, 1 - 1e-6)
    costs = np.log((1 - p) / p) + np.log((1 - beta) / beta)
    if contact_size is not None:
        sizes = np.asarray(contact_size, dtype=np.float64)
        if sizes.shape != costs.shape:
            raise ValueError(f"contact_size shape {sizes.shape} differs from mean_boundary {costs.shape}")
        costs = costs * sizes / max(sizes.max(initial=0.0), 1.0)
    return costs


def multicut(n_nodes: int, uv_ids: np.ndarray, costs: np.ndarray, solver: str = "kernighan-lin") -> np.ndarray:
    """Node labels of a multicut: ``"gaec"`` (greedy additive edge contraction) or
    ``"kernighan-lin"`` (GAEC, then Kernighan-Lin moves), via bioimage-cpp.

    Args:
        n_nodes: number of nodes (ids ``0 .. n_nodes - 1``).
        uv_ids: ``(E, 2)`` edges.
        costs: ``(E,)`` edge costs, positive = attractive.
        solver: ``"gaec"`` or ``"kernighan-lin"``.

    Example:
        >>> # a triangle: 0-1 attract strongly, 0-2 and 1-2 repel: the optimum cuts 2 off
        >>> multicut(3, np.array([[0, 1], [0, 2], [1, 2]]), np.array([5.0, -1.0, -1.0])).tolist()
        [0, 0, 1]
    """
    uv = np.asarray(uv_ids, dtype=np.int64).reshape(-1, 2)
    c = np.asarray(costs, dtype=np.float64)
    if c.shape != (len(uv),):
        raise ValueError(f"costs shape {c.shape} does not match {len(uv)} edges")
    if len(uv) and (uv.min() < 0 or uv.max() >= n_nodes):
        raise ValueError(f"edge ids must lie in [0, {n_nodes}), found [{uv.min()}, {uv.max()}]")
    if len(uv) == 0:
        return np.arange(n_nodes, dtype=np.int64)
    graph = bic.graph.UndirectedGraph(int(n_nodes))
    graph.insertEdges(uv)
    objective = bic.graph.multicut.MulticutObjective(graph, c)
    if solver == "gaec":
        labels = bic.graph.multicut.GreedyAdditiveMulticut().optimize(objective)
    elif solver == "kernighan-lin":
        labels = bic.graph.multicut.ChainedMulticutSolvers(
            [bic.graph.multicut.GreedyAdditiveMulticut(), bic.graph.multicut.KernighanLinMulticut()]
        ).optimize(objective)
    else:
        raise ValueError(f"unknown multicut solver {solver!r}; choose 'gaec' or 'kernighan-lin'")
    _, dense = np.unique(np.asarray(labels), return_inverse=True)
    return dense.astype(np.int64)


def mean_boundary_agglomeration(
    n_nodes: int, uv_ids: np.ndarray, mean_boundary: np.ndarray, contact_size: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """Merge regions greedily along the edge of lowest mean boundary probability while it is below ``threshold``.

    After each merge the edges of the merged regions to a common neighbour are combined: their
    mean is the contact-size weighted mean, so it is always the mean boundary probability along
    the whole shared surface.

    Example:
        >>> uv = np.array([[0, 1], [1, 2], [2, 3]])
        >>> mean_boundary_agglomeration(4, uv, np.array([0.1, 0.8, 0.3]), np.ones(3), 0.5).tolist()
        [0, 0, 1, 1]
    """
    uv = np.asarray(uv_ids, dtype=np.int64).reshape(-1, 2)
    p = np.asarray(mean_boundary, dtype=np.float64)
    s = np.asarray(contact_size, dtype=np.float64)
    if p.shape != (len(uv),) or s.shape != (len(uv),):
        raise ValueError(f"mean_boundary {p.shape} and contact_size {s.shape} must both have one value per edge ({len(uv)})")
    parent = list(range(n_nodes))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    # adjacency of the current regions: neighbour -> [boundary sum, contact size]
    adj: list[dict[int, list[float]]] = [dict() for _ in range(n_nodes)]
    for (u, v), pi, si in zip(uv.tolist(), p.tolist(), s.tolist()):
        if u == v:
            continue
        for a, b in ((u, v), (v, u)):
            entry = adj[a].setdefault(b, [0.0, 0.0])
            entry[0] += pi * si
            entry[1] += si
    heap = [(pi, int(u), int(v)) for (u, v), pi in zip(uv.tolist(), p.tolist()) if u != v]
    heapq.heapify(heap)
    while heap:
        value, u, v = heapq.heappop(heap)
        if value >= threshold:
            break
        ru, rv = find(u), find(v)
        if ru == rv or ru != u or rv != v:
            continue  # stale: an endpoint was merged since this entry was pushed
        entry = adj[ru].get(rv)
        if entry is None or abs(entry[0] / max(entry[1], 1e-12) - value) > 1e-12:
            continue  # stale: the edge's mean changed
        if len(adj[ru]) < len(adj[rv]):
            ru, rv = rv, ru
        parent[rv] = ru  # merge rv into ru
        del adj[ru][rv]
        del adj[rv][ru]
        for w, (bsum, size) in adj[rv].items():
            del adj[w][rv]
            entry = adj[ru].setdefault(w, [0.0, 0.0])
            entry[0] += bsum
            entry[1] += size
            adj[w][ru] = entry
            heapq.heappush(heap, (entry[0] / max(entry[1], 1e-12), ru, w))
        adj[rv] = {}
    roots = np.array([find(a) for a in range(n_nodes)], dtype=np.int64)
    _, dense = np.unique(roots, return_inverse=True)
    return dense.astype(np.int64)


def object_moments(
    labels: np.ndarray, spacing: Sequence[float] | None = None, origin: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel count, sums of voxel-centre coordinates and sums of their products, for every id ``0..labels.max()``.

    Sums, not means, so that the moments of an object cut into pieces (out-of-core blocks) add up.
    Coordinates are in the units of ``spacing``, counted from the volume's origin when ``labels``
    is a box of it starting at voxel ``origin``. Computed with ``np.bincount`` plane by plane, so
    memory stays bounded.

    Args:
        labels: ``([Z,] Y, X)`` non-negative integer ids.
        spacing: physical voxel size per axis; None = 1.
        origin: the box's first voxel in the volume (default zeros).

    Returns:
        ``(count (n,), first (n, d), second (n, d, d))`` with ``n = labels.max() + 1``; ``second``
        holds the products for axes ``a <= b`` only (upper triangle).

    Example:
        >>> count, first, _ = object_moments(np.array([[0, 1, 1]]), origin=(2, 0))
        >>> count.tolist(), first[1].tolist()
        ([1.0, 2.0], [4.0, 3.0])
    """
    lab = check_instance_ids(labels)
    d = lab.ndim
    sp = _spacing(spacing, d) or [1.0] * d
    org = [0] * d if origin is None else [int(o) for o in origin]
    if len(org) != d:
        raise ValueError(f"origin {tuple(org)} needs one entry per axis of labels of shape {lab.shape}")
    n = int(lab.max()) + 1 if lab.size else 1
    count = np.zeros(n)
    first = np.zeros((n, d))
    second = np.zeros((n, d, d))
    step = max(1, (1 << 22) // max(1, math.prod(lab.shape[1:])))  # about 4 M voxels per pass
    for start in range(0, lab.shape[0], step):
        block = lab[start : start + step]
        flat = block.reshape(-1).astype(np.intp)
        grids = np.meshgrid(*[np.arange(k, dtype=np.float64) for k in block.shape], indexing="ij", copy=False)
        coords = [((g + org[a] + (start if a == 0 else 0)) * sp[a]).reshape(-1) for a, g in enumerate(grids)]
        count += np.bincount(flat, minlength=n)
        for a in range(d):
            first[:, a] += np.bincount(flat, weights=coords[a], minlength=n)
            for b in range(a, d):
                second[:, a, b] += np.bincount(flat, weights=coords[a] * coords[b], minlength=n)
    return count, first, second


def major_axis_from_moments(count: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Major-axis lengths from :func:`object_moments` sums (``NaN`` where the count is 0).

    Example:
        >>> lab = np.zeros((4, 9), np.int64); lab[1, 1:8] = 1
        >>> round(float(major_axis_from_moments(*object_moments(lab))[1]), 3)  # 2 sqrt(4 (7^2 - 1) / 12)
        8.0
    """
    count, first, second = np.asarray(count, np.float64), np.asarray(first, np.float64), np.asarray(second, np.float64)
    d = first.shape[1]
    present = count > 0
    out = np.full(len(count), np.nan)
    if present.any():
        c = count[present]
        mean = first[present] / c[:, None]
        cov = second[present] / c[:, None, None] - mean[:, :, None] * mean[:, None, :]
        upper = np.triu_indices(d, 1)
        cov[:, upper[1], upper[0]] = cov[:, upper[0], upper[1]]  # only a <= b was accumulated
        largest = np.clip(np.linalg.eigvalsh(cov)[:, -1], 0.0, None)
        out[present] = 2.0 * np.sqrt((d + 2) * largest)
    return out


def major_axis_lengths(labels: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Major-axis length of every id ``0..labels.max()`` (``NaN`` for absent ids), in the units of ``spacing``.

    The length of the major axis of the ellipse (2D) or ellipsoid (3D) with the same second
    central moments as the object's voxel centres: ``2 sqrt((d + 2) lambda_max)`` with
    ``lambda_max`` the largest eigenvalue of their covariance and ``d`` the number of axes.
    This is ``skimage.measure.regionprops``' ``axis_major_length``, here for all objects in
    one pass (moments from ``np.bincount``, plane by plane, so memory stays bounded) and with
    anisotropic voxels: coordinates are scaled by ``spacing`` first.

    Args:
        labels: ``([Z,] Y, X)`` non-negative integer ids.
        spacing: physical voxel size per axis; None = 1.

    Raises:
        ValueError: non-integer or negative ids, not 2D/3D, bad spacing.

    Example:
        >>> lab = np.zeros((1, 20, 40), np.int64); lab[0, 5:8, 2:32] = 1  # a 3 x 30 bar
        >>> round(float(major_axis_lengths(lab[0])[1]), 1)  # 2 sqrt(4 (30^2 - 1) / 12)
        34.6
        >>> round(float(major_axis_lengths(lab[0], spacing=(1.0, 0.5))[1]), 1)
        17.3
    """
    return major_axis_from_moments(*object_moments(labels, spacing))


def filter_instances(
    labels: np.ndarray,
    min_size: int = 0,
    max_size: int | None = None,
    background: np.ndarray | None = None,
    min_major_axis: float = 0.0,
    max_major_axis: float | None = None,
    spacing: Sequence[float] | None = None,
    edge_min_fraction: float = 0.0,
) -> np.ndarray:
    """Remove objects with fewer than ``min_size`` or more than ``max_size`` voxels, those
    lying mostly in ``background``, those whose major axis (:func:`major_axis_lengths`, in
    the units of ``spacing``) is shorter than ``min_major_axis`` or longer than
    ``max_major_axis``, and edge slivers (:func:`edge_slivers`, ``edge_min_fraction``); then
    relabel 1..N consecutively (0 = background).

    The major-axis filter removes elongated debris (a long thin membrane fragment can have a
    nucleus's volume) and merged objects (two touching nuclei are twice as long as one).

    Raises:
        ValueError: non-integer labels, a background mask of another shape, negative or
            crossed limits, bad spacing.

    Example:
        >>> filter_instances(np.array([[5, 5, 0, 9], [5, 5, 0, 7]]), min_size=2).tolist()
        [[1, 1, 0, 0], [1, 1, 0, 0]]
        >>> lab = np.zeros((20, 40), np.int64); lab[2:6, 2:6] = 3; lab[10:12, 2:38] = 4  # blob, bar
        >>> np.unique(filter_instances(lab, max_major_axis=20.0)).tolist()  # the 36-pixel bar goes
        [0, 1]
    """
    lab = np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integer ids, got {lab.dtype}")
    check_filter_limits(min_size, max_size, min_major_axis, max_major_axis)
    lab = lab.astype(np.int64)
    ids, counts = np.unique(lab, return_counts=True)
    drop = (counts < int(min_size)) | ((counts > max_size) if max_size is not None else False)
    if background is not None:
        bg = np.asarray(background, dtype=bool)
        if bg.shape != lab.shape:
            raise ValueError(f"background shape {bg.shape} differs from the labels {lab.shape}")
        in_bg = np.bincount(np.searchsorted(ids, lab[bg]), minlength=len(ids))
        drop |= in_bg > counts / 2
    removed = ids[drop & (ids != 0)]
    if len(removed):
        lab = np.where(np.isin(lab, removed), 0, lab)
    out, _, _ = relabel_sequential(lab)
    if min_major_axis > 0 or max_major_axis is not None:
        lengths = major_axis_lengths(out, spacing)
        bad = (lengths < float(min_major_axis)) | ((lengths > float(max_major_axis)) if max_major_axis is not None else False)
        bad[0] = False
        if bad.any():
            out = np.where(bad[out], 0, out)
            out, _, _ = relabel_sequential(out)
    if edge_min_fraction > 0:
        slivers = edge_slivers(out, edge_min_fraction)
        if len(slivers):
            out = np.where(np.isin(out, slivers), 0, out)
            out, _, _ = relabel_sequential(out)
    return out


def edge_slivers(labels: np.ndarray, fraction: float) -> np.ndarray:
    """Ids of the objects cut by the Y or X edge of ``labels`` with fewer voxels than
    ``fraction`` times the median size of the objects that touch neither.

    A nucleus mostly outside the field of view leaves a sliver at the image edge; references
    such as the Cell Tracking Challenge's leave it unlabelled, and a user counting nuclei
    wants it gone. Only the last two axes count as edges: the Z ends of a thin stack cut
    every object. With no object clear of the edges there is no typical size and nothing is
    removed.

    Args:
        labels: ``([Z,] Y, X)`` non-negative integer ids, 0 = background.
        fraction: in [0, 1).

    Raises:
        ValueError: ``fraction`` outside [0, 1), labels neither 2D nor 3D.

    Example:
        >>> lab = np.zeros((12, 12), np.int64)
        >>> lab[3:7, 3:7] = 1; lab[0:2, 8:12] = 2; lab[8:12, 0:4] = 3  # interior 16, sliver 8, cut 16
        >>> edge_slivers(lab, 0.6).tolist()
        [2]
    """
    if not isinstance(fraction, (int, float, np.floating)) or isinstance(fraction, bool) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"edge fraction must be a number in [0, 1), got {fraction!r}")
    lab = check_instance_ids(labels)
    counts = np.bincount(lab.reshape(-1).astype(np.intp))
    edges = [lab[..., 0, :], lab[..., -1, :], lab[..., :, 0], lab[..., :, -1]]
    on_edge = np.zeros(len(counts), bool)
    on_edge[np.unique(np.concatenate([e.reshape(-1) for e in edges]))] = True
    on_edge[0] = False
    present = counts > 0
    present[0] = False
    interior = present & ~on_edge
    if fraction == 0 or not interior.any():
        return np.zeros(0, np.int64)
    limit = fraction * float(np.median(counts[interior]))
    return np.flatnonzero(on_edge & (counts < limit)).astype(np.int64)


def segment_instances(
    boundary: np.ndarray,
    params: InstanceParams | None = None,
    spacing: Sequence[float] | None = None,
    foreground: np.ndarray | None = None,
    **changes: Any,
) -> np.ndarray:
    """Instance ids (``uint32``, 0 = background) from a boundary probability map.

    Args:
        boundary: ``([Z,] Y, X)`` boundary probabilities.
        params: the settings (:class:`~cseg_monai.postprocessing.instance_params.InstanceParams`;
            default ``InstanceParams()``): ``method`` ``"multicut"`` (GAEC + Kernighan-Lin on
            :func:`edge_costs`), ``"agglomeration"`` (:func:`mean_boundary_agglomeration`) or
            ``"watershed"`` (the supervoxels themselves); ``threshold``, ``sigma_seeds``,
            ``min_supervoxel_size`` of :func:`watershed_supervoxels`; ``beta`` of the multicut
            costs; ``agglomeration_threshold``; the object filters ``min_size``, ``max_size``,
            ``min_major_axis``, ``max_major_axis``, ``edge_min_fraction`` (:func:`filter_instances`); and
            ``mask_watershed``: restrict the watershed to ``foreground`` (background voxels get
            id 0 and take no part in the graph partition), so objects end exactly at the
            foreground's edge and need no boundary against the background. For sparse objects
            in background, e.g. nuclei, especially in thin or anisotropic stacks where a 3D
            boundary against the background covers whole planes of an object.
        spacing: physical voxel size per axis (watershed distances, major-axis lengths).
        foreground: optional boolean mask (e.g. foreground probability > 0.5); objects lying
            mostly outside it are removed.
        **changes: fields of ``params`` to replace for this call (``method="watershed"``).

    Raises:
        ValueError: a bad boundary map, an unknown or invalid parameter, ``mask_watershed``
            without ``foreground``.
    """
    if params is not None and not isinstance(params, InstanceParams):
        raise ValueError(f"params must be an InstanceParams, got {type(params).__name__}")
    p = params or InstanceParams()
    if changes:
        InstanceParams.check_names(changes, "segment_instances")
        p = p.replace(**changes)
    method, threshold, sigma_seeds, mask_watershed = p.method, p.threshold, p.sigma_seeds, p.mask_watershed
    b = _check_boundary(boundary)
    if mask_watershed and foreground is None:
        raise ValueError("mask_watershed needs a foreground mask")
    mask = np.asarray(foreground, dtype=bool) if mask_watershed else None
    if mask is not None and not mask.any():
        return np.zeros(b.shape, np.uint32)
    seg = watershed_supervoxels(b, threshold, sigma_seeds, min_size=p.min_supervoxel_size, spacing=spacing, mask=mask)
    if method != "watershed":
        rag, uv, mean_b, sizes = region_adjacency(seg, b)
        n_nodes = int(seg.max()) + 1
        if len(uv) and (seg == 0).any():
            # id 0 is unassigned background, not a region: merging objects through it would join
            # every object that touches the background into one
            keep = (uv != 0).all(axis=1)
            uv, mean_b, sizes = uv[keep], mean_b[keep], sizes[keep]
        if method == "multicut":
            node_labels = multicut(n_nodes, uv, edge_costs(mean_b, sizes, p.beta))
        else:
            node_labels = mean_boundary_agglomeration(n_nodes, uv, mean_b, sizes, p.agglomeration_threshold)
        node_labels = node_labels + 1  # 0 stays free for the background
        if (seg == 0).any():
            node_labels[0] = 0
        seg = node_labels[seg.astype(np.int64)]
    background = None if foreground is None else ~np.asarray(foreground, dtype=bool)
    return filter_instances(
        seg, min_size=p.min_size, max_size=p.max_size, background=background,
        min_major_axis=p.min_major_axis, max_major_axis=p.max_major_axis, spacing=spacing,
        edge_min_fraction=p.edge_min_fraction,
    ).astype(np.uint32)  # fmt: skip
