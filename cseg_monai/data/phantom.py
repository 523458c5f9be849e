"""Synthetic electron-microscopy (EM) phantoms with exact labels, in 2D and 3D.

The phantom imitates a serial-section EM image of neuropil: densely packed
cells (a warped Voronoi tessellation) separated by dark membranes, on a grey,
faintly textured cytoplasm, with mitochondria (a dark double membrane around a
darker matrix with cristae), synapses (a dark thickening of a membrane) and
clouds of small round vesicles next to them. Because the geometry is drawn
first and the image rendered from it, every label is exact.

It is the embedded default data of the demo and the fixture of most tests, so
it is fast (a 512x512 slice takes about 0.15 s, a 64x128x128 volume about
1 s on two CPU cores) and fully deterministic: everything random comes from
``np.random.default_rng(seed)``, so the same arguments give bit-identical
arrays.

Axis order is (Y, X) for 2D and (Z, Y, X) for 3D. Distances are measured in
physical units set by ``spacing`` and expressed in in-plane pixels, so in an
anisotropic stack (for example ``spacing=(5, 1, 1)``) a cell spans five times
fewer slices than pixels. In such thick-sectioned stacks cells are also
elongated along Z (by sqrt(z/xy spacing ratio), at most 2.5x), like neurites
running through a serial-section stack, so few membranes lie flat in a
section.

Semantic classes (uint8 ids, in the order of :data:`CLASS_NAMES`):

==  ===============  =====================================================
id  constant         meaning
==  ===============  =====================================================
0   CYTOPLASM        cell interior not covered by an organelle
1   MEMBRANE         cell membrane (the boundary between two cells)
2   MITOCHONDRION    mitochondrial matrix (interior)
3   MITO_MEMBRANE    the mitochondrion's double membrane (about 2 px)
4   SYNAPSE          synaptic density: a dark thick patch on a cell membrane
5   VESICLE          small round synaptic vesicles, in clouds near synapses
==  ===============  =====================================================

Example:
    >>> from cseg_monai.data.phantom import make_phantom, MEMBRANE
    >>> p = make_phantom((128, 128), seed=3)
    >>> p.image.dtype, p.semantic.dtype, p.instances.dtype
    (dtype('uint8'), dtype('uint8'), dtype('int32'))
    >>> bool(p.image[p.semantic == MEMBRANE].mean() < p.image.mean())
    True
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from cseg_monai.common.constants import IGNORE_INDEX, ORGANELLE_CLASSES
from cseg_monai.data.writers import write_tiff

__all__ = [
    "CYTOPLASM",
    "MEMBRANE",
    "MITOCHONDRION",
    "MITO_MEMBRANE",
    "SYNAPSE",
    "VESICLE",
    "NUM_CLASSES",
    "CLASS_NAMES",
    "CLASS_GREY",
    "Phantom",
    "make_phantom",
    "write_phantom_dataset",
    "write_organelle_dataset",
]

CYTOPLASM = 0
MEMBRANE = 1
MITOCHONDRION = 2
MITO_MEMBRANE = 3
SYNAPSE = 4
VESICLE = 5
NUM_CLASSES = 6

#: Class names, indexed by semantic class id (the organelle classes of every organelle data set).
CLASS_NAMES: tuple[str, ...] = ORGANELLE_CLASSES

#: Base grey level of each class in [0, 1] before blur, illumination and noise
#: (the vesicle entry is its dark rim; its lumen is light, about 0.72).
CLASS_GREY: tuple[float, ...] = (0.65, 0.2, 0.45, 0.25, 0.1, 0.15)

_VESICLE_LUMEN = 0.8
_CELL_AREA_2D = 60.0**2  # one cell per this many (physical) pixels in 2D
_CELL_VOLUME_3D = 40.0**3  # one cell per this many (physical) voxels in 3D
_MAX_Z_ELONGATION = 2.5  # cells up to this much longer along Z in anisotropic stacks
_MITO_MEMBRANE_WIDTH = 2.0  # physical in-plane pixels
_MITO_MARGIN = 2.0  # minimum cytoplasm gap between a mitochondrion and anything else


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic EM image with its exact labels.

    Attributes:
        image: uint8 grey image, shape (Y, X) or (Z, Y, X); membranes dark,
            cytoplasm light grey.
        semantic: uint8 class ids of the same shape (see :data:`CLASS_NAMES`).
        instances: int32 cell ids 1..N of the same shape. Every voxel belongs
            to a cell; a membrane voxel belongs to the cell whose interior is
            nearest. 0 occurs nowhere.

    Example:
        >>> p = make_phantom((64, 64), seed=0, n_cells=4)
        >>> p.ndim, p.n_cells
        (2, 4)
        >>> sorted(set(p.isbi_label().ravel().tolist()))
        [0, 255]
    """

    image: np.ndarray
    semantic: np.ndarray
    instances: np.ndarray

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return int(self.image.ndim)

    @property
    def n_cells(self) -> int:
        """Number of cells, i.e. the largest instance id."""
        return int(self.instances.max()) if self.instances.size else 0

    def isbi_label(self) -> np.ndarray:
        """Membrane label as in the ISBI 2012 challenge.

        Returns:
            uint8 array, 0 on cell membranes (MEMBRANE or SYNAPSE, not
            mitochondrial membranes) and 255 everywhere else.
        """
        boundary = (self.semantic == MEMBRANE) | (self.semantic == SYNAPSE)
        return np.where(boundary, 0, 255).astype(np.uint8)

    def class_fractions(self) -> dict[str, float]:
        """Fraction of voxels of each semantic class, keyed by class name."""
        counts = np.bincount(self.semantic.ravel(), minlength=NUM_CLASSES)
        total = max(int(self.semantic.size), 1)
        return {name: float(counts[i]) / total for i, name in enumerate(CLASS_NAMES)}


# --------------------------------------------------------------------------- #
# argument validation
# --------------------------------------------------------------------------- #
def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _check_shape(shape: Any) -> tuple[int, ...]:
    msg = f"shape must be a sequence of 2 (Y, X) or 3 (Z, Y, X) positive ints, got {shape!r}"
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise ValueError(msg)
    items = list(shape)
    if len(items) not in (2, 3) or not all(_is_int(s) and int(s) > 0 for s in items):
        raise ValueError(msg)
    return tuple(int(s) for s in items)


def _check_spacing(spacing: Any, ndim: int) -> np.ndarray:
    msg = f"spacing must be a sequence of {ndim} positive finite numbers (one per axis), got {spacing!r}"
    if spacing is None:
        return np.ones(ndim)
    if isinstance(spacing, (str, bytes)) or not isinstance(spacing, (Sequence, np.ndarray)):
        raise ValueError(msg)
    items = list(spacing)
    if len(items) != ndim or not all(_is_real(s) and float(s) > 0 for s in items):
        raise ValueError(msg)
    return np.asarray(items, dtype=np.float64)


def _check_real(name: str, value: Any, lo: float, hi: float = math.inf, *, lo_open: bool = False,
                hi_open: bool = False) -> float:
    if not _is_real(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    bad_lo = v <= lo if lo_open else v < lo
    bad_hi = v >= hi if hi_open else v > hi
    if bad_lo or bad_hi:
        left = "(" if lo_open else "["
        right = ")" if (hi_open or hi == math.inf) else "]"
        raise ValueError(f"{name} must be in {left}{lo:g}, {hi:g}{right}, got {value!r}")
    return v


# --------------------------------------------------------------------------- #
# random fields and geometry helpers
# --------------------------------------------------------------------------- #
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], corr: Sequence[float]) -> np.ndarray:
    """Smooth Gaussian random field of about unit variance (float32).

    Built separably: random values on a coarse grid with node spacing ``corr``
    (voxels, per axis) interpolated with Gaussian weights, one axis at a time
    (a few small matrix products instead of a full-size convolution).
    """
    mats = []
    nodes_shape = []
    for n, c in zip(shape, corr):
        step = max(float(c), 1.0)
        m = int(math.ceil(max(n - 1, 0) / step)) + 5
        nodes = (np.arange(m) - 2.0) * step
        x = np.arange(n, dtype=np.float64)
        w = np.exp(-0.5 * ((x[:, None] - nodes[None, :]) / (0.75 * step)) ** 2)
        w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
        mats.append(w.astype(np.float32))
        nodes_shape.append(m)
    field = rng.standard_normal(tuple(nodes_shape), dtype=np.float32)
    # np.einsum without optimize runs numpy's own single-threaded loops (no
    # BLAS threads): bit-reproducible and not slowed down by a busy machine
    src = "abc"[: len(shape)]
    for ax in range(len(shape)):
        dst = src[:ax] + "z" + src[ax + 1:]
        field = np.einsum(f"z{src[ax]},{src}->{dst}", mats[ax], field)
    return np.ascontiguousarray(field, dtype=np.float32)


def _default_n_cells(shape: tuple[int, ...], sp: np.ndarray) -> int:
    phys = float(np.prod(np.asarray(shape) * sp))
    per_cell = _CELL_AREA_2D if len(shape) == 2 else _CELL_VOLUME_3D
    return max(2, int(round(phys / per_cell)))


def _seed_points(rng: np.random.Generator, shape: tuple[int, ...], sp: np.ndarray, n: int) -> np.ndarray:
    """``n`` distinct voxel positions, spread out like a Poisson-disk sample."""
    total = int(np.prod(shape))
    n_cand = min(total, max(64, 30 * n))
    cand = rng.choice(total, size=n_cand, replace=False)
    pts = np.stack(np.unravel_index(cand, shape), axis=1)
    phys = pts * sp
    vol = float(np.prod(np.asarray(shape) * sp))
    dmin2 = (0.55 * (vol / n) ** (1.0 / len(shape))) ** 2
    acc = np.empty((n, len(shape)))
    chosen: list[int] = []
    used = np.zeros(n_cand, dtype=bool)
    while len(chosen) < n:
        for j in range(n_cand):
            if used[j]:
                continue
            if chosen:
                d2 = ((acc[: len(chosen)] - phys[j]) ** 2).sum(axis=1).min()
                if d2 < dmin2:
                    continue
            acc[len(chosen)] = phys[j]
            chosen.append(j)
            used[j] = True
            if len(chosen) == n:
                break
        dmin2 = dmin2 * 0.5 if dmin2 > 1e-6 else 0.0
    return pts[np.asarray(chosen)]


def _warped_voronoi(rng: np.random.Generator, shape: tuple[int, ...], sp: np.ndarray,
                    pts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Nearest-seed labels 1..n seen through a smooth random warp (so cell
    borders are gently curved), and each voxel's distance to the border of
    its cell, measured in the warped physical space (None for one cell).

    The border distance is the smallest distance to the bisector between the
    voxel's seed and one of the next nearest seeds, which is exact for a
    Voronoi cell and independent of the border's orientation on the grid.
    """
    n = len(pts)
    ndim = len(shape)
    if n == 1:
        return np.ones(shape, dtype=np.int32), None
    cell = (float(np.prod(np.asarray(shape) * sp)) / n) ** (1.0 / ndim)
    amp, corr = 0.09 * cell, 0.45 * cell  # physical units; |gradient| << 1, so no folds
    coords = np.empty((int(np.prod(shape)), ndim), dtype=np.float64)
    for ax, size in enumerate(shape):
        disp = _smooth_noise(rng, shape, corr / sp) * np.float32(amp)
        grid = (np.arange(size, dtype=np.float32) * np.float32(sp[ax])).reshape(
            [-1 if a == ax else 1 for a in range(ndim)])
        coords[:, ax] = (grid + disp).ravel()
    seeds = pts * sp
    k = min(n, 4)
    dist, idx = cKDTree(seeds).query(coords, k=k, workers=2)
    del coords
    lab = (idx[:, 0] + 1).astype(np.int32).reshape(shape)
    d1 = dist[:, 0]
    border = np.full(d1.shape, np.inf)
    for j in range(1, k):
        sep = np.sqrt(((seeds[idx[:, j]] - seeds[idx[:, 0]]) ** 2).sum(axis=1))
        np.minimum(border, (dist[:, j] ** 2 - d1**2) / (2.0 * sep), out=border)
    return lab, border.reshape(shape).astype(np.float32)


def _boundary(lab: np.ndarray) -> np.ndarray:
    """Voxels with a face neighbour of a smaller label: a one-voxel line on
    one side of every border, which separates different labels in face
    connectivity (every face-adjacent pair of different labels has one voxel
    in it)."""
    out = np.zeros(lab.shape, dtype=bool)
    for ax in range(lab.ndim):
        hi = [slice(None)] * lab.ndim
        lo = [slice(None)] * lab.ndim
        hi[ax] = slice(1, None)
        lo[ax] = slice(None, -1)
        a, b = lab[tuple(hi)], lab[tuple(lo)]
        out[tuple(hi)] |= a > b
        out[tuple(lo)] |= b > a
    return out


def _box(center: np.ndarray, half: np.ndarray, shape: tuple[int, ...], sp: np.ndarray
         ) -> tuple[tuple[slice, ...], list[np.ndarray]] | None:
    """Clipped box around a physical ``center`` with physical half extents
    ``half``; returns slices and broadcastable physical offsets from center."""
    c_vox = center / sp
    lo = np.floor(c_vox - half / sp).astype(int)
    hi = np.ceil(c_vox + half / sp).astype(int) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(shape))
    if np.any(hi <= lo):
        return None
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    offs = []
    for ax in range(len(shape)):
        v = np.arange(lo[ax], hi[ax], dtype=np.float64) * sp[ax] - center[ax]
        offs.append(v.reshape([-1 if a == ax else 1 for a in range(len(shape))]))
    return sl, offs


def _random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    if ndim == 2:
        t = rng.uniform(0.0, math.pi)
        return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q


# --------------------------------------------------------------------------- #
# structures
# --------------------------------------------------------------------------- #
def _place_synapses(rng: np.random.Generator, rng_ves: np.random.Generator, n_syn: int,
                    lab: np.ndarray, semantic: np.ndarray, boundary: np.ndarray, dist_int: np.ndarray,
                    sp: np.ndarray, thickness: int, vesicles: bool) -> list[tuple]:
    """Paint synaptic densities (and vesicle clouds) in place; returns vesicle
    geometry for the renderer."""
    shape = lab.shape
    ndim = lab.ndim
    ves_geom: list[tuple] = []
    cand = np.flatnonzero(boundary)
    if n_syn == 0 or cand.size == 0:
        return ves_geom
    order = rng.permutation(cand.size)[: max(200, 80 * n_syn)]
    placed = 0
    for j in order:
        if placed >= n_syn:
            break
        p_vox = np.asarray(np.unravel_index(int(cand[j]), shape), dtype=np.float64)
        p = p_vox * sp
        radius = rng.uniform(7.0, 12.0)  # half length of the density along the membrane
        psd = 3.0  # thickening into the postsynaptic cell
        cloud_r = rng.uniform(5.0, 8.0)
        cloud_d = thickness / 2.0 + 2.0 + cloud_r
        pre_first = rng.random() < 0.5
        # the whole patch inside the image in-plane
        if np.any(p_vox[-2:] * sp[-2:] < radius + 1) or np.any(
                (np.asarray(shape[-2:]) - 1 - p_vox[-2:]) * sp[-2:] < radius + 1):
            continue
        reach = max(radius, cloud_d + cloud_r) + 4.0
        got = _box(p, np.full(ndim, reach), shape, sp)
        if got is None:
            continue
        sl, offs = got
        r2 = sum(o**2 for o in offs)
        near = r2 <= (radius + thickness + 2.0) ** 2
        labs = np.unique(lab[sl][near])
        if labs.size != 2:  # too close to a junction of three cells
            continue
        sem = semantic[sl]
        if np.any((sem[r2 <= reach**2] == SYNAPSE) | (sem[r2 <= reach**2] == VESICLE)):
            continue
        a, b = int(labs[0]), int(labs[1])
        pre, post = (a, b) if pre_first else (b, a)
        ball = r2 <= radius**2
        lab_box = lab[sl]
        d_box = dist_int[sl]
        post_in = ball & (lab_box == post)
        pre_in = ball & (lab_box == pre)
        if not post_in.any() or not pre_in.any() or d_box[post_in].max() < psd + 4.0:
            continue
        # direction from the membrane into the presynaptic cell
        w = pre_in.astype(np.float64)
        normal = np.array([(w * np.broadcast_to(o, w.shape)).sum() for o in offs]) / w.sum()
        nn = float(np.linalg.norm(normal))
        if nn < 1e-6:
            continue
        normal /= nn
        mem_box = sem == MEMBRANE
        patch = ball & (mem_box | ((lab_box == post) & (sem == CYTOPLASM) & (d_box <= psd)))
        sem[patch] = SYNAPSE
        placed += 1
        if not vesicles:
            continue
        center = p + normal * cloud_d
        n_ves = int(rng_ves.integers(8, 19))
        done = 0
        for _ in range(4 * n_ves):
            if done >= n_ves:
                break
            c = center + rng_ves.normal(0.0, cloud_r / 2.0, ndim)
            r = rng_ves.uniform(2.3, 3.3)
            got = _box(c, np.full(ndim, r + 1.0) + sp, shape, sp)
            if got is None:
                continue
            vsl, voffs = got
            vr2 = sum(o**2 for o in voffs)
            disk = vr2 <= r**2
            if not disk.any():
                continue
            ring = (vr2 <= (r + 1.0) ** 2) | ndi.binary_dilation(disk, structure=np.ones((3,) * ndim, bool))
            vsem = semantic[vsl]
            if np.any(vsem[ring] != CYTOPLASM) or np.any(lab[vsl][ring] != pre):
                continue
            vsem[disk] = VESICLE
            ves_geom.append((vsl, np.sqrt(vr2), r))
            done += 1
    return ves_geom


def _canonicalize(lab: np.ndarray, semantic: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Make every cell's interior one face-connected piece and derive instances.

    Interior = everything but MEMBRANE/SYNAPSE. Per cell only the largest
    interior component is kept; stray pieces become membrane and cells without
    interior disappear. Each voxel then gets the id of the nearest kept
    interior (so membrane voxels belong to the nearest cell), ids 1..N.
    """
    boundary = (semantic == MEMBRANE) | (semantic == SYNAPSE)
    comp, ncomp = ndi.label(~boundary)
    if ncomp == 0:  # no interior anywhere (tiny image, thick membranes)
        _, inv = np.unique(lab, return_inverse=True)
        return (inv.reshape(lab.shape) + 1).astype(np.int32)
    flat = comp.ravel()
    sizes = np.bincount(flat, minlength=ncomp + 1)
    owner = np.zeros(ncomp + 1, dtype=np.int64)
    owner[flat] = lab.ravel()
    ids = np.arange(1, ncomp + 1)
    # per owner, the largest component (ties: the lowest component id)
    order = np.lexsort((ids, -sizes[1:], owner[1:]))
    first = np.ones(ncomp, dtype=bool)
    first[1:] = owner[1:][order][1:] != owner[1:][order][:-1]
    keep = np.zeros(ncomp + 1, dtype=bool)
    keep[ids[order][first]] = True
    if not keep[1:].all():
        semantic[(~keep[comp]) & (comp > 0)] = MEMBRANE
    kept_ids = ids[keep[1:]]
    kept_owner = owner[kept_ids]
    # consecutive instance ids in the order of the original (seed) labels
    rank = np.argsort(kept_owner, kind="stable")
    comp_to_inst = np.zeros(ncomp + 1, dtype=np.int32)
    comp_to_inst[kept_ids[rank]] = np.arange(1, kept_ids.size + 1, dtype=np.int32)
    inst = comp_to_inst[comp]
    missing = inst == 0
    if missing.any():
        idx = ndi.distance_transform_edt(missing, sampling=sp, return_distances=False, return_indices=True)
        inst = inst[tuple(idx)]
    return inst.astype(np.int32, copy=False)


def _place_mitochondria(rng: np.random.Generator, fraction: float, inst: np.ndarray, semantic: np.ndarray,
                        dist_int: np.ndarray, sp: np.ndarray) -> list[tuple]:
    """Paint mitochondria in place; returns geometry for the renderer."""
    shape = inst.shape
    ndim = inst.ndim
    n = int(inst.max())
    geom: list[tuple] = []
    if fraction <= 0 or n == 0:
        return geom
    k = min(n, max(1, int(round(fraction * n))))
    cells = rng.choice(np.arange(1, n + 1), size=k, replace=False)
    objs = ndi.find_objects(inst)
    for cid in cells:
        sl_cell = objs[int(cid) - 1]
        if sl_cell is None:
            continue
        n_mito = 1 + int(rng.random() < 0.35)
        for _ in range(n_mito):
            for attempt in range(8):
                scale = 0.85**attempt
                a = rng.uniform(10.0, 24.0) * scale
                b = rng.uniform(5.5, 8.5) * max(scale, 0.7)
                axes = np.array([a, b] if ndim == 2 else [a, b, b * rng.uniform(0.8, 1.2)])
                rot = _random_rotation(rng, ndim)
                ok = ((inst[sl_cell] == cid) & (semantic[sl_cell] == CYTOPLASM)
                      & (dist_int[sl_cell] >= axes.min() + _MITO_MARGIN + 1.0))
                flat = np.flatnonzero(ok)
                if flat.size == 0:
                    continue
                loc = np.asarray(np.unravel_index(int(flat[rng.integers(flat.size)]), ok.shape))
                c_vox = loc + np.array([s.start for s in sl_cell])
                center = c_vox * sp
                got = _box(center, np.full(ndim, axes.max() + _MITO_MARGIN) + 2 * sp, shape, sp)
                if got is None:
                    continue
                bsl, offs = got
                # coordinates along the ellipsoid axes
                u = [sum(rot[d, i] * offs[d] for d in range(ndim)) for i in range(ndim)]
                q_out = sum((u[i] / axes[i]) ** 2 for i in range(ndim))
                outer = q_out <= 1.0
                q_in = sum((u[i] / max(axes[i] - _MITO_MEMBRANE_WIDTH, 0.5)) ** 2 for i in range(ndim))
                inner = (q_in <= 1.0) & ndi.binary_erosion(outer)
                if inner.sum() < 4:
                    continue
                q_margin = sum((u[i] / (axes[i] + _MITO_MARGIN)) ** 2 for i in range(ndim))
                foot = (q_margin <= 1.0) | ndi.binary_dilation(outer, structure=np.ones((3,) * ndim, bool))
                if np.any(semantic[bsl][foot] != CYTOPLASM) or np.any(inst[bsl][foot] != cid):
                    continue
                sem = semantic[bsl]
                sem[outer] = MITO_MEMBRANE
                sem[inner] = MITOCHONDRION
                geom.append((bsl, inner, u[0], u[1], rng.uniform(4.5, 6.5), rng.uniform(0, 2 * math.pi)))
                break
    return geom


def _render(rng_tex: np.random.Generator, rng_illum: np.random.Generator, rng_noise: np.random.Generator,
            semantic: np.ndarray, inst: np.ndarray, sp: np.ndarray, mito_geom: list[tuple],
            ves_geom: list[tuple], blur_sigma: float, noise_std: float, illumination: float) -> np.ndarray:
    shape = semantic.shape
    grey = np.asarray(CLASS_GREY, dtype=np.float32)
    img = grey[semantic]
    cyto = semantic == CYTOPLASM
    # per-cell brightness and a faint granular texture of the cytoplasm
    n = int(inst.max())
    cell_off = rng_tex.normal(0.0, 0.035, n + 1).astype(np.float32)
    fine = rng_tex.standard_normal(shape, dtype=np.float32)
    fine = ndi.gaussian_filter(fine, sigma=0.8 / sp, truncate=3.0)
    fine *= np.float32(1.0 / max(float(fine.std()), 1e-6))
    medium = _smooth_noise(rng_tex, shape, 6.0 / sp)
    grains = ndi.gaussian_filter(fine, sigma=1.2 / sp, truncate=3.0)  # sparse dark granules
    grains *= np.float32(1.0 / max(float(grains.std()), 1e-6))
    np.clip(grains - np.float32(1.6), 0.0, None, out=grains)
    tex = cell_off[inst] + np.float32(0.045) * fine + np.float32(0.03) * medium - np.float32(0.25) * grains
    img[cyto] += tex[cyto]
    mito_all = (semantic == MITOCHONDRION)
    img[mito_all] += np.float32(0.5) * tex[mito_all]
    # cristae: wavy dark lamellae across the long axis of each mitochondrion
    for bsl, inner, u0, u1, period, phase in mito_geom:
        sel = inner & (semantic[bsl] == MITOCHONDRION)
        if not sel.any():
            continue
        wave = np.cos(2 * math.pi * u0 / period + phase + 0.9 * np.sin(u1 / 2.5))
        stripes = np.clip(wave, 0.0, 1.0) ** 4
        m = np.broadcast_to(stripes, sel.shape)[sel].astype(np.float32)
        img[bsl][sel] = np.float32(0.48) - np.float32(0.22) * m
    # vesicles: light lumen inside a dark rim
    for vsl, rho, r in ves_geom:
        sel = (semantic[vsl] == VESICLE) & (rho <= r - 1.2)
        img[vsl][sel] = np.float32(_VESICLE_LUMEN)
    if blur_sigma > 0:
        img = ndi.gaussian_filter(img, sigma=blur_sigma / sp, truncate=3.0)
    if illumination > 0:
        ext = max(shape[-2:]) * 0.6
        f = _smooth_noise(rng_illum, shape, ext / sp)
        lo, hi = float(f.min()), float(f.max())
        if hi - lo > 1e-12:
            f = (f - np.float32(lo)) * np.float32(2.0 / (hi - lo)) - np.float32(1.0)
            img *= np.float32(1.0) + np.float32(illumination) * f
    if noise_std > 0:
        img += np.float32(noise_std) * rng_noise.standard_normal(shape, dtype=np.float32)
    np.clip(img, 0.0, 1.0, out=img)
    return np.rint(img * np.float32(255.0)).astype(np.uint8)


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
def make_phantom(
    shape: Sequence[int],
    seed: int = 0,
    *,
    n_cells: int | None = None,
    membrane_thickness: int = 3,
    spacing: Sequence[float] | None = None,
    mito_fraction: float = 0.3,
    n_synapses: int | None = None,
    vesicles: bool = True,
    blur_sigma: float = 1.0,
    noise_std: float = 0.06,
    illumination: float = 0.25,
) -> Phantom:
    """Generate a synthetic EM image of neuropil with exact labels.

    Cells are a Voronoi tessellation of spread-out random seed points, seen
    through a smooth random warp so borders are gently curved. Cell membranes
    are closed: they separate different cells in face connectivity, and every
    cell's interior (all that is not MEMBRANE or SYNAPSE) is one
    face-connected piece. Mitochondria sit well inside cells, never touching
    a membrane; synapses are dark thick patches on the membrane between two
    cells, with a vesicle cloud on the presynaptic side.

    Args:
        shape: (Y, X) or (Z, Y, X), positive ints.
        seed: non-negative int; the same arguments and seed give bit-identical
            output.
        n_cells: number of cells (>= 1); default one per 60^2 (2D) or 40^3
            (3D, times the Z elongation) physical voxels, at least 2. A few cells may be dropped if
            the membranes leave them no interior (rare); ``Phantom.n_cells``
            is the number actually present.
        membrane_thickness: cell-membrane width in in-plane pixels (>= 1).
        spacing: voxel size per axis, e.g. (5, 1, 1) for a stack cut five
            times thicker than its pixel size; default isotropic. Only ratios
            matter: lengths are measured in in-plane pixels. With a Z spacing
            larger than in-plane, cells are elongated along Z (see the module
            docstring) and the default cell count keeps their in-plane size.
        mito_fraction: fraction of cells, in [0, 1], that contain one or two
            mitochondria (at least one cell when > 0, if there is room).
        n_synapses: number of synapses (>= 0); default about one per five
            cells, at least one. Fewer are made where no suitable membrane
            stretch (away from three-cell junctions) remains.
        vesicles: draw a vesicle cloud next to each synapse.
        blur_sigma: Gaussian blur of the image in in-plane pixels (>= 0).
        noise_std: standard deviation of the additive Gaussian noise, in
            units of the [0, 1] grey range (>= 0).
        illumination: relative amplitude in [0, 1) of a smooth multiplicative
            illumination field, which ranges over 1 +- illumination.

    Returns:
        A :class:`Phantom` with ``image`` (uint8), ``semantic`` (uint8 class
        ids) and ``instances`` (int32 cell ids 1..N) of the given shape.

    Raises:
        ValueError: on any invalid argument, with a message naming it.

    Example:
        >>> p = make_phantom((96, 96), seed=7)
        >>> p.image.shape, int(p.semantic.max()) <= 5, int(p.instances.min()) >= 1
        ((96, 96), True, True)
        >>> v = make_phantom((8, 64, 64), seed=7, spacing=(5.0, 1.0, 1.0))
        >>> v.image.shape
        (8, 64, 64)
        >>> bool((make_phantom((96, 96), seed=7).image == p.image).all())
        True
    """
    shape_t = _check_shape(shape)
    ndim = len(shape_t)
    if not _is_int(seed) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    total = int(np.prod(shape_t))
    if n_cells is not None and (not _is_int(n_cells) or not 1 <= int(n_cells) <= total):
        raise ValueError(f"n_cells must be None or an int in [1, {total}] (the number of voxels), got {n_cells!r}")
    if not _is_int(membrane_thickness) or int(membrane_thickness) < 1:
        raise ValueError(f"membrane_thickness must be an int >= 1, got {membrane_thickness!r}")
    sp_in = _check_spacing(spacing, ndim)
    mito_fraction = _check_real("mito_fraction", mito_fraction, 0.0, 1.0)
    if n_synapses is not None and (not _is_int(n_synapses) or int(n_synapses) < 0):
        raise ValueError(f"n_synapses must be None or an int >= 0, got {n_synapses!r}")
    if not isinstance(vesicles, (bool, np.bool_)):
        raise ValueError(f"vesicles must be a bool, got {vesicles!r}")
    blur_sigma = _check_real("blur_sigma", blur_sigma, 0.0)
    noise_std = _check_real("noise_std", noise_std, 0.0)
    illumination = _check_real("illumination", illumination, 0.0, 1.0, hi_open=True)

    thickness = int(membrane_thickness)
    sp = sp_in / float(min(sp_in[-2:]))  # physical unit = one in-plane pixel
    rng = np.random.default_rng(int(seed))
    r_cells, r_warp, r_syn, r_ves, r_mito, r_tex, r_illum, r_noise = rng.spawn(8)

    # 1. cells: warped Voronoi tessellation
    # In thick-sectioned stacks cells are elongated along Z, like neurites
    # running through a serial-section stack; otherwise many membranes would
    # lie almost flat in a section and show as large dark sheets.
    sp_cells = sp.copy()
    if ndim == 3:
        sp_cells[0] /= min(_MAX_Z_ELONGATION, math.sqrt(max(float(sp[0]), 1.0)))
    n = int(n_cells) if n_cells is not None else min(total, _default_n_cells(shape_t, sp_cells))
    pts = _seed_points(r_cells, shape_t, sp_cells, n)
    lab, border = _warped_voronoi(r_warp, shape_t, sp_cells, pts)

    # 2. membranes: the band within thickness/2 of the cell borders, plus a
    #    one-voxel line on one side of every border that makes them closed
    line = _boundary(lab)
    mem = line if (border is None or thickness == 1) else (line | (border < thickness / 2.0))
    del border
    semantic = np.where(mem, MEMBRANE, CYTOPLASM).astype(np.uint8)
    if mem.any():
        dist_int = ndi.distance_transform_edt(~mem, sampling=sp).astype(np.float32)
    else:
        dist_int = np.full(shape_t, np.inf, dtype=np.float32)

    # 3. synapses and vesicle clouds
    n_cells_now = int(lab.max())
    if n_synapses is None:
        n_syn = max(1, int(round(n_cells_now / 5))) if n_cells_now > 1 else 0
    else:
        n_syn = int(n_synapses)
    ves_geom = _place_synapses(r_syn, r_ves, n_syn, lab, semantic, line, dist_int, sp, thickness, bool(vesicles))

    # 4. one interior piece per cell; instances 1..N
    inst = _canonicalize(lab, semantic, sp)
    del lab

    # 5. mitochondria
    mito_geom = _place_mitochondria(r_mito, mito_fraction, inst, semantic, dist_int, sp)

    # 6. image formation
    image = _render(r_tex, r_illum, r_noise, semantic, inst, sp, mito_geom, ves_geom, blur_sigma, noise_std,
                    illumination)
    return Phantom(image=image, semantic=semantic, instances=inst)


def _atomic_write(path: Path, write: Any) -> None:
    """Write ``path`` via a temporary file in the same folder and os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_png(path: Path, arr: np.ndarray) -> None:
    _atomic_write(path, lambda tmp: Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG"))


def _write_tif(path: Path, arr: np.ndarray) -> None:
    _atomic_write(path, lambda tmp: tifffile.imwrite(tmp, np.ascontiguousarray(arr)))


def _instances_for_tiff(inst: np.ndarray) -> np.ndarray:
    return inst.astype(np.uint16) if int(inst.max()) <= np.iinfo(np.uint16).max else inst.astype(np.int32)


def write_phantom_dataset(
    out_dir: str | os.PathLike[str],
    n_train: int = 12,
    n_test: int = 2,
    size: int = 256,
    seed: int = 0,
    layout: str = "isbi",
    *,
    overwrite: bool = False,
    **phantom_kwargs: Any,
) -> dict[str, Any]:
    """Write a phantom dataset to disk, ISBI-2012 style or as volumes.

    ``layout="isbi"`` writes 2D slices, each from its own seed (train slice
    ``i`` from ``seed + i``, test slice ``i`` from ``seed + n_train + i``)::

        out_dir/train/image/{i}.png      uint8 grey image
        out_dir/train/label/{i}.png      uint8, 0 = cell membrane (MEMBRANE or
                                         SYNAPSE), 255 = everything else
        out_dir/train/semantic/{i}.tif   uint8 class ids
        out_dir/train/instances/{i}.tif  cell ids (uint16, int32 if > 65535)
        out_dir/test/image/{i}.png

    ``layout="volume"`` generates one 3D phantom of shape
    (n_train, size, size) from ``seed`` and writes ``out_dir/image.tif``,
    ``semantic.tif`` and ``instances.tif`` as multi-page TIFFs (``n_test`` is
    not used).

    Every file is written under a temporary name in its folder and moved into
    place with ``os.replace``, so no half-written file is ever visible.

    Args:
        out_dir: target folder; created if missing. An existing non-empty
            folder is refused unless ``overwrite`` is true (then files of the
            same names are replaced; other files are left alone).
        n_train: number of training slices (isbi) or slices of the volume, >= 1.
        n_test: number of test images (isbi), >= 0.
        size: height and width of each slice in pixels, >= 16.
        seed: base seed, a non-negative int.
        layout: "isbi" or "volume".
        overwrite: allow writing into a non-empty folder.
        **phantom_kwargs: passed on to :func:`make_phantom` (e.g.
            ``membrane_thickness``, ``noise_std``, ``spacing`` for volumes).

    Returns:
        dict with ``layout``, ``out_dir``, ``n_train``, ``n_test``, ``size``,
        ``seed``, ``files`` (lists of written paths by kind, e.g.
        ``files["train/image"]``), ``n_files`` and ``membrane_fraction`` (mean
        fraction of label-0 pixels over the training data).

    Raises:
        ValueError: on invalid arguments, or if ``out_dir`` is an existing
            non-empty folder (or a file) and ``overwrite`` is false.

    Example:
        >>> import tempfile, os
        >>> d = os.path.join(tempfile.mkdtemp(), "isbi")
        >>> info = write_phantom_dataset(d, n_train=2, n_test=1, size=64)
        >>> len(info["files"]["train/image"]), len(info["files"]["test/image"])
        (2, 1)
    """
    if layout not in ("isbi", "volume"):
        raise ValueError(f"layout must be 'isbi' or 'volume', got {layout!r}")
    if not _is_int(n_train) or int(n_train) < 1:
        raise ValueError(f"n_train must be an int >= 1, got {n_train!r}")
    if not _is_int(n_test) or int(n_test) < 0:
        raise ValueError(f"n_test must be an int >= 0, got {n_test!r}")
    if not _is_int(size) or int(size) < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    if not _is_int(seed) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    for bad in ("shape", "seed"):
        if bad in phantom_kwargs:
            raise ValueError(f"{bad!r} cannot be passed through phantom_kwargs; use size/n_train/seed")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"out_dir {str(out)!r} is a folder that is not empty; pass overwrite=True to write into it")
    n_train, n_test, size, seed = int(n_train), int(n_test), int(size), int(seed)

    files: dict[str, list[str]] = {}
    mem_fracs: list[float] = []

    def _add(kind: str, path: Path) -> None:
        files.setdefault(kind, []).append(str(path))

    if layout == "isbi":
        dirs = {k: out / k for k in ("train/image", "train/label", "train/semantic", "train/instances")}
        if n_test:
            dirs["test/image"] = out / "test" / "image"
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for i in range(n_train):
            p = make_phantom((size, size), seed=seed + i, **phantom_kwargs)
            label = p.isbi_label()
            mem_fracs.append(float((label == 0).mean()))
            for kind, name, arr, writer in (
                ("train/image", f"{i}.png", p.image, _write_png),
                ("train/label", f"{i}.png", label, _write_png),
                ("train/semantic", f"{i}.tif", p.semantic, _write_tif),
                ("train/instances", f"{i}.tif", _instances_for_tiff(p.instances), _write_tif),
            ):
                path = dirs[kind] / name
                writer(path, arr)
                _add(kind, path)
        for i in range(n_test):
            p = make_phantom((size, size), seed=seed + n_train + i, **phantom_kwargs)
            path = dirs["test/image"] / f"{i}.png"
            _write_png(path, p.image)
            _add("test/image", path)
    else:
        out.mkdir(parents=True, exist_ok=True)
        p = make_phantom((n_train, size, size), seed=seed, **phantom_kwargs)
        mem_fracs.append(float((p.isbi_label() == 0).mean()))
        for kind, arr in (("image", p.image), ("semantic", p.semantic),
                          ("instances", _instances_for_tiff(p.instances))):
            path = out / f"{kind}.tif"
            _write_tif(path, arr)
            _add(kind, path)

    return {
        "layout": layout,
        "out_dir": str(out),
        "n_train": n_train,
        "n_test": n_test if layout == "isbi" else 0,
        "size": size,
        "seed": seed,
        "files": files,
        "n_files": sum(len(v) for v in files.values()),
        "membrane_fraction": float(np.mean(mem_fracs)) if mem_fracs else 0.0,
    }


def write_organelle_dataset(
    out_dir: str | os.PathLike[str],
    n_slices: int = 8,
    shape: Sequence[int] = (256, 256),
    seed: int = 0,
    labelled_fraction: float = 1.0,
    **phantom_kwargs: Any,
) -> str:
    """Write 2D (or 3D) phantoms in the organelle ``folder`` layout and return ``out_dir``.

    Layout (see :mod:`cseg_monai.data.datasets.organelles`)::

        out_dir/images/{i}.tif   uint8 grey slice (or volume)
        out_dir/labels/{i}.tif   uint8 class ids (:data:`CLASS_NAMES`), 255 = unlabelled

    Item ``i`` comes from ``seed + i``. With ``labelled_fraction < 1`` only that fraction of the
    rows (2D) or planes (3D) keeps its labels, the rest is 255 (sparse labels). Files are
    written atomically; existing files of the same names are replaced.

    Args:
        out_dir: target folder (created).
        n_slices: number of items, >= 1.
        shape: ``(Y, X)`` or ``(Z, Y, X)`` of each item, every axis >= 16.
        seed: base seed.
        labelled_fraction: fraction of rows/planes kept labelled, in (0, 1].
        **phantom_kwargs: passed to :func:`make_phantom`.

    Example:
        >>> import tempfile, tifffile
        >>> root = write_organelle_dataset(tempfile.mkdtemp(), n_slices=1, shape=(64, 64))
        >>> bool(tifffile.imread(root + "/labels/0.tif").max() <= 5)
        True
    """
    if not _is_int(n_slices) or n_slices < 1:
        raise ValueError(f"n_slices must be a positive int, got {n_slices!r}")
    if not _is_real(labelled_fraction) or not 0 < labelled_fraction <= 1:
        raise ValueError(f"labelled_fraction must lie in (0, 1], got {labelled_fraction!r}")
    shape = _check_shape(shape)
    root = Path(out_dir)
    for i in range(int(n_slices)):
        ph = make_phantom(shape, seed=int(seed) + i, **phantom_kwargs)
        labels = ph.semantic.astype(np.uint8).copy()
        if labelled_fraction < 1:
            rng = np.random.default_rng(int(seed) + 10_000 + i)
            n = labels.shape[0]
            keep = np.zeros(n, dtype=bool)
            keep[rng.choice(n, max(1, round(labelled_fraction * n)), replace=False)] = True
            labels[~keep] = IGNORE_INDEX
        write_tiff(root / "images" / f"{i}.tif", ph.image)
        write_tiff(root / "labels" / f"{i}.tif", labels)
    return str(root)
