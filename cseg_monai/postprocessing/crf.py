"""Fully connected CRF (Krähenbühl & Koltun 2011) over 2D and 3D volumes, by mean-field inference.

The model, for voxels ``i`` with class probabilities ``p_i`` from a per-voxel classifier::

    E(x) = sum_i -log p_i(x_i)
         + sum_{i<j} mu(x_i, x_j) * [ w_s * k_s(i, j) + w_a * k_a(i, j) ]
    k_s(i, j) = exp(-|(pos_i - pos_j) / sigma_s|^2 / 2)                         smoothness
    k_a(i, j) = exp(-|(pos_i - pos_j) / sigma_a|^2 / 2 - |(I_i - I_j) / sigma_i|^2 / 2)  appearance

Positions are in physical units (``spacing`` per axis, e.g. nanometres; ssTEM sections are
about 10x thicker than pixels), so ``sigma_s`` and ``sigma_a`` are lengths in those units;
``sigma_i`` is in the image's intensity units (one value per channel). ``mu`` is the label
compatibility: Potts (``1 - identity``: any two different labels cost 1) or a full symmetric
matrix, e.g. the organelle preset that makes impossible neighbours expensive.
Each kernel is normalised symmetrically (``D^-1/2 K D^-1/2`` with ``D = diag(K 1)``), as in
pydensecrf's ``NORMALIZE_SYMMETRIC``, so a weight means "this much cost when all neighbours
disagree" whatever the kernel widths.

Two backends with one interface (:class:`DenseCRF`):

* ``"native"``: PyTorch only, CPU or GPU. The smoothness kernel is a regular grid: voxels
  are summed over cells of about half the spatial sigma, the grid is blurred by a separable
  Gaussian whose width makes up the rest of the kernel's variance, and each cell's value is
  repeated back over its voxels. The appearance kernel is a bilateral grid while that grid
  is small (nearest spatial cell, linear interpolation along each intensity channel with a
  step of one intensity sigma; splat and slice are sparse CSR matrix-vector products, MKL on
  a CPU, cuSPARSE on a GPU); for narrow kernels, whose dense grid would have more than
  ``_GRID_CELLS_PER_VOXEL`` cells per voxel, it is a permutohedral lattice built with
  pydensecrf's own arithmetic (the same vertices, so the same filter to float precision),
  whose cost follows the voxels whatever the widths. Every filter slices with its splat's
  weights. Large volumes run block by block with a halo (``block_voxels``, ``halo``), so
  memory stays bounded by the block size.
* ``"pydensecrf"``: the permutohedral-lattice C++ implementation from the ``pydensecrf2``
  package (``bash scripts/setup.sh crf``), single-threaded, whole volume at once.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "BACKENDS",
    "CRFParams",
    "DenseCRF",
    "ORGANELLE_CLASSES",
    "check_crf_inputs",
    "compatibility_matrix",
    "have_pydensecrf",
    "mean_field_energy",
    "organelle_compatibility",
]

BACKENDS = ("native", "pydensecrf")

#: Class order of the organelle bundle's ``channel_def`` (the default input of this module).
ORGANELLE_CLASSES = ("cytoplasm", "membrane", "mitochondrion", "mitochondrion_membrane", "synapse", "vesicle")

# Pairs that cannot touch in EM of neural tissue, for the organelle preset: a mitochondrion's
# interior is wrapped in its own membrane, so it never borders cytoplasm, cell membrane,
# synapses or vesicles directly; vesicles sit in the cytoplasm, not on a mitochondrion.
_ORGANELLE_IMPOSSIBLE = (
    ("mitochondrion", "cytoplasm"),
    ("mitochondrion", "membrane"),
    ("mitochondrion", "synapse"),
    ("mitochondrion", "vesicle"),
    ("mitochondrion_membrane", "synapse"),
    ("mitochondrion_membrane", "vesicle"),
)

# Spatial grid step of the native backend, in units of the spatial sigma: smaller is more
# exact and slower. Along intensity channels the step is one intensity sigma (linear splat).
_SPATIAL_STEP = 0.5
_SUM_TOLERANCE = 1e-2
# The appearance kernel is a dense bilateral grid while it has at most this many cells per
# voxel, else a permutohedral lattice (measured crossover on 64x128x128: about 3.4).
_GRID_CELLS_PER_VOXEL = 3.0


def have_pydensecrf() -> bool:
    """Whether the optional ``pydensecrf`` module (package ``pydensecrf2``) can be imported."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class CRFParams:
    """Parameters of the fully connected CRF, in physical units.

    Args:
        iterations: mean-field iterations (>= 1).
        smoothness_weight: ``w_s`` (>= 0; 0 switches the smoothness kernel off).
        smoothness_sigma: ``sigma_s``, a length in the units of ``spacing`` (> 0).
        appearance_weight: ``w_a`` (>= 0; 0 switches the appearance kernel off).
        appearance_sigma: ``sigma_a``, a length in the units of ``spacing`` (> 0).
        intensity_sigma: ``sigma_i`` in image intensity units, one value or one per channel (> 0).
        compatibility: ``"potts"``, ``"organelle"`` (the preset for :data:`ORGANELLE_CLASSES`), or a
            symmetric square matrix (nested lists) of label-pair costs.

    Example:
        >>> p = CRFParams(iterations=5, smoothness_sigma=10.0, appearance_sigma=40.0)
        >>> p.replace(iterations=3).iterations
        3
    """

    iterations: int = 5
    smoothness_weight: float = 3.0
    smoothness_sigma: float = 1.0
    appearance_weight: float = 5.0
    appearance_sigma: float = 5.0
    intensity_sigma: float | tuple[float, ...] = 10.0
    compatibility: Any = "potts"

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, (int, np.integer)) or self.iterations < 1:
            raise ValueError(f"CRFParams.iterations must be an integer >= 1, got {self.iterations!r}")
        for name in ("smoothness_weight", "appearance_weight"):
            value = getattr(self, name)
            if not _finite_number(value) or value < 0:
                raise ValueError(f"CRFParams.{name} must be a finite number >= 0, got {value!r}")
        for name in ("smoothness_sigma", "appearance_sigma"):
            value = getattr(self, name)
            if not _finite_number(value) or value <= 0:
                raise ValueError(f"CRFParams.{name} must be a finite number > 0, got {value!r}")
        sig_i = self.intensity_sigma
        values = sig_i if isinstance(sig_i, (list, tuple)) else (sig_i,)
        if not values or any(not _finite_number(v) or v <= 0 for v in values):
            raise ValueError(f"CRFParams.intensity_sigma must be > 0 (one value or one per channel), got {sig_i!r}")
        if isinstance(sig_i, list):
            object.__setattr__(self, "intensity_sigma", tuple(float(v) for v in sig_i))
        comp = self.compatibility
        if isinstance(comp, str):
            if comp not in ("potts", "organelle"):
                raise ValueError(f"CRFParams.compatibility must be 'potts', 'organelle' or a matrix, got {comp!r}")
        else:
            compatibility_matrix(comp, np.asarray(comp).shape[0] if np.ndim(comp) == 2 else -1)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CRFParams:
        """Build from a mapping (e.g. a bundle config section), rejecting unknown keys by name.

        Example:
            >>> CRFParams.from_dict({"iterations": 2}).iterations
            2
            >>> CRFParams.from_dict({"iteration": 2})
            Traceback (most recent call last):
            ...
            ValueError: unknown CRF parameter(s) ['iteration']; known: ['appearance_sigma', 'appearance_weight', 'compatibility', 'intensity_sigma', 'iterations', 'smoothness_sigma', 'smoothness_weight']
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown CRF parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> CRFParams:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the inverse of :meth:`from_dict`)."""
        out = dataclasses.asdict(self)
        if isinstance(out["intensity_sigma"], tuple):
            out["intensity_sigma"] = list(out["intensity_sigma"])
        if isinstance(out["compatibility"], np.ndarray):
            out["compatibility"] = out["compatibility"].tolist()
        return out


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def organelle_compatibility(impossible_cost: float = 3.0) -> np.ndarray:
    """Compatibility of the organelle preset over :data:`ORGANELLE_CLASSES`.

    Potts (cost 1 between different labels) except the pairs that cannot be neighbours in
    neural tissue (a mitochondrion's interior next to cytoplasm, cell membrane, synapse or
    vesicle; a mitochondrion's membrane next to a synapse or vesicle), which cost
    ``impossible_cost``.

    Example:
        >>> m = organelle_compatibility(4.0)
        >>> float(m[2, 0]), float(m[3, 2]), float(m[1, 1])
        (4.0, 1.0, 0.0)
    """
    if not _finite_number(impossible_cost) or impossible_cost < 0:
        raise ValueError(f"impossible_cost must be a finite number >= 0, got {impossible_cost!r}")
    n = len(ORGANELLE_CLASSES)
    mu = np.ones((n, n), np.float32) - np.eye(n, dtype=np.float32)
    for a, b in _ORGANELLE_IMPOSSIBLE:
        i, j = ORGANELLE_CLASSES.index(a), ORGANELLE_CLASSES.index(b)
        mu[i, j] = mu[j, i] = impossible_cost
    return mu


def compatibility_matrix(spec: Any, n_labels: int) -> np.ndarray:
    """The ``n_labels x n_labels`` float32 label-compatibility (cost) matrix named by ``spec``.

    Args:
        spec: ``"potts"``, ``"organelle"`` or a square symmetric matrix of finite costs.
        n_labels: number of classes of the probability map (-1 to only check a matrix).

    Example:
        >>> compatibility_matrix("potts", 3).tolist()
        [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    if isinstance(spec, str):
        if spec == "potts":
            return np.ones((n_labels, n_labels), np.float32) - np.eye(n_labels, dtype=np.float32)
        if spec == "organelle":
            if n_labels not in (-1, len(ORGANELLE_CLASSES)):
                raise ValueError(
                    f"the 'organelle' compatibility is for the {len(ORGANELLE_CLASSES)} classes "
                    f"{list(ORGANELLE_CLASSES)}, but the probabilities have {n_labels} classes"
                )
            return organelle_compatibility()
        raise ValueError(f"compatibility must be 'potts', 'organelle' or a matrix, got {spec!r}")
    try:
        mu = np.asarray(spec, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"compatibility matrix is not numeric: {err}") from None
    if mu.ndim != 2 or mu.shape[0] != mu.shape[1]:
        raise ValueError(f"compatibility matrix must be square, got shape {mu.shape}")
    if n_labels != -1 and mu.shape[0] != n_labels:
        raise ValueError(f"compatibility matrix is {mu.shape[0]}x{mu.shape[0]} but the probabilities have {n_labels} classes")
    if not np.isfinite(mu).all():
        raise ValueError("compatibility matrix has NaN or infinite entries")
    if not np.allclose(mu, mu.T, atol=1e-6):
        raise ValueError("compatibility matrix must be symmetric (mu[a, b] == mu[b, a])")
    return mu.astype(np.float32)


def check_crf_inputs(
    prob: np.ndarray | torch.Tensor,
    image: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | None = None,
    *,
    name: str = "input",
) -> tuple[int, tuple[int, ...], int, tuple[float, ...]]:
    """Validate a probability map and its image; return ``(n_labels, spatial_shape, n_channels, spacing)``.

    Args:
        prob: ``(L, [Z,] Y, X)`` class probabilities (summing to 1 over the first axis).
        image: ``([Z,] Y, X)`` or ``(C, [Z,] Y, X)`` intensities, with the same spatial shape.
        spacing: physical voxel size per spatial axis (default 1 per axis).
        name: what to call the inputs in error messages (e.g. the file name).

    Raises:
        ValueError: naming ``name`` and the problem.

    Example:
        >>> p = np.full((2, 4, 5), 0.5, np.float32)
        >>> check_crf_inputs(p, np.zeros((4, 5), np.uint8))
        (2, (4, 5), 1, (1.0, 1.0))
    """
    p_shape, i_shape = tuple(prob.shape), tuple(image.shape)
    if len(p_shape) not in (3, 4):
        raise ValueError(f"{name}: probabilities must be (classes, [Z,] Y, X), got shape {p_shape}")
    n_labels, spatial = p_shape[0], p_shape[1:]
    if n_labels < 2:
        raise ValueError(f"{name}: probabilities need at least 2 classes, got {n_labels}")
    if min(spatial) < 1:
        raise ValueError(f"{name}: empty volume, probabilities of shape {p_shape}")
    if i_shape == spatial:
        n_channels = 1
    elif len(i_shape) == len(spatial) + 1 and i_shape[1:] == spatial:
        n_channels = i_shape[0]
    else:
        raise ValueError(f"{name}: image shape {i_shape} does not match the probabilities' spatial shape {spatial}")
    p = prob.detach().cpu().numpy() if isinstance(prob, torch.Tensor) else np.asarray(prob)
    if not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"{name}: probabilities must be floating point, got dtype {p.dtype}")
    im = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if not (np.issubdtype(im.dtype, np.floating) or np.issubdtype(im.dtype, np.integer)):
        raise ValueError(f"{name}: image must be numeric, got dtype {im.dtype}")
    if np.issubdtype(im.dtype, np.floating) and not np.isfinite(im).all():
        raise ValueError(f"{name}: image has NaN or infinite values")
    # chunked checks, three passes per chunk (sum, min, max): a NaN or infinity anywhere makes
    # its voxel's sum non-finite, so no separate isfinite pass is needed
    flat = p.reshape(n_labels, -1)
    step = 1 << 22
    for start in range(0, flat.shape[1], step):
        part = flat[:, start : start + step].astype(np.float32, copy=False)
        sums = part.sum(0)
        if not np.isfinite(sums).all():
            raise ValueError(f"{name}: probabilities have NaN or infinite values")
        lo, hi = float(part.min()), float(part.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{name}: probabilities must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")
        worst = float(np.abs(sums - 1).max())
        if worst > _SUM_TOLERANCE:
            raise ValueError(
                f"{name}: probabilities must sum to 1 over the class axis (axis 0) at every voxel; "
                f"the largest deviation is {worst:.3g} (are these logits, or is the class axis elsewhere?)"
            )
    if spacing is None:
        spacing_t = (1.0,) * len(spatial)
    else:
        spacing_t = tuple(float(s) for s in spacing)
        if len(spacing_t) != len(spatial) or any(not math.isfinite(s) or s <= 0 for s in spacing_t):
            raise ValueError(f"{name}: spacing must be {len(spatial)} positive numbers (one per spatial axis), got {spacing!r}")
    return n_labels, spatial, n_channels, spacing_t


# --------------------------------------------------------------------------------------
# native backend
# --------------------------------------------------------------------------------------


def _gaussian_taps(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _blur_axis(grid: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian along ``axis`` with zeros beyond the grid (a symmetric linear map)."""
    n = grid.shape[axis]
    if sigma < 1e-3 or n == 1:
        return grid
    taps = _gaussian_taps(sigma).to(grid.device)
    radius = taps.numel() // 2
    pre, post = math.prod(grid.shape[:axis]), math.prod(grid.shape[axis + 1 :])
    flat = grid.reshape(pre, n, post)
    if n <= 24 * taps.numel():  # BLAS with the banded matrix beats shifted adds on short axes
        offsets = torch.arange(n, device=grid.device)
        diff = offsets[:, None] - offsets[None, :]
        band = torch.where(diff.abs() <= radius, taps[(diff + radius).clamp(0, 2 * radius)], torch.zeros((), device=grid.device))
        if post == 1:  # the last axis: one GEMM, (pre, n) @ band^T (band is symmetric)
            return torch.mm(flat.reshape(pre, n), band).reshape(grid.shape)
        return torch.matmul(band, flat).reshape(grid.shape)
    weights = taps.tolist()
    out = flat * weights[radius]
    for k in range(1, min(radius, n - 1) + 1):  # in-place scaled adds, no temporaries
        out[:, k:].add_(flat[:, :-k], alpha=weights[radius + k])
        out[:, :-k].add_(flat[:, k:], alpha=weights[radius - k])
    return out.reshape(grid.shape)


def _blur_grid(grid: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """The separable Gaussian of :func:`_blur_axis` along grid axes 1, 2, ... (axis 0: labels).

    The caller's reference keeps ``grid`` alive during the call; the hot paths inline this
    loop so that each input is freed as soon as the next axis is done.
    """
    for axis, sigma in enumerate(sigmas):
        grid = _blur_axis(grid, axis + 1, sigma)
    return grid


def _csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR matrix from its parts (no invariant checks; they hold by construction)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the operations used here are not
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size, check_invariants=False)


def _cell_steps(shape: Sequence[int], sigma_vox: Sequence[float]) -> tuple[list[int], list[int], list[float]]:
    """Grid step (voxels), number of cells and blur sigma (cells) per spatial axis of a kernel.

    The step is about half the sigma; nearest-cell splatting of integer positions into cells
    of ``s`` voxels has variance ``(s^2 - 1) / 12`` (splat and slice: twice that), and the blur
    makes up the rest of the kernel's variance.
    """
    steps = [max(1, int(round(_SPATIAL_STEP * s))) if n > 1 else 1 for s, n in zip(sigma_vox, shape)]
    cells = [(n + s - 1) // s for n, s in zip(shape, steps)]
    blur = [
        math.sqrt(max(sv * sv - 2.0 * (s * s - 1) / 12.0, 0.0)) / s if n > 1 else 0.0
        for sv, s, n in zip(sigma_vox, steps, shape)
    ]
    return steps, cells, blur


def _along(axis: int, index: slice) -> tuple[slice, ...]:
    """Index tuple selecting ``index`` along ``axis`` (everything along the axes before it)."""
    return (slice(None),) * axis + (index,)


def _pool(v: torch.Tensor, steps: Sequence[int]) -> torch.Tensor:
    """Sum over cells of ``steps`` voxels along the spatial axes 1.. of ``v`` (the last cell may be partial).

    Last axis first (it shrinks the data most); the whole cells of an axis as adds of strided
    slices, one pass over the data (a sum over a short strided axis is several times slower).
    """
    for axis in range(len(steps), 0, -1):
        s = steps[axis - 1]
        if s == 1:
            continue
        n = v.shape[axis]
        full = n // s
        shape = list(v.shape)
        shape[axis] = -(-n // s)
        out = torch.empty(shape, dtype=v.dtype, device=v.device)
        if full:
            head = out[_along(axis, slice(0, full))]
            torch.add(v[_along(axis, slice(0, full * s, s))], v[_along(axis, slice(1, full * s, s))], out=head)
            for r in range(2, s):
                head.add_(v[_along(axis, slice(r, full * s, s))])
        if n > full * s:  # the partial last cell
            torch.sum(v[_along(axis, slice(full * s, n))], dim=axis, keepdim=True, out=out[_along(axis, slice(full, None))])
        v = out
    return v


def _repeat_regions(n: int, s: int) -> list[tuple[slice, slice, int]]:
    """(voxel slice, cell slice, voxels per cell) pieces of an axis of ``n`` voxels in cells of ``s``."""
    full = n // s
    pieces = [(slice(0, full * s), slice(0, full), s)] if full else []
    if n > full * s:
        pieces.append((slice(full * s, n), slice(full, full + 1), n - full * s))
    return pieces


def _unpool_into(g: torch.Tensor, out: torch.Tensor, steps: Sequence[int], accumulate: bool) -> None:
    """``out (+)= g`` repeated over every cell's voxels (the transpose of :func:`_pool`), 3 spatial axes.

    ``g`` is first repeated along the last axis (a small copy, ``1 / (sz sy)`` of the volume);
    the other two axes are broadcast views: ``out`` is cut into at most 4 boxes of whole cells
    (the last, partial cell of an axis is a box of its own), each viewed as
    ``(labels, cz, sz, cy, sy, x)`` and updated by one broadcast operation over contiguous rows.
    """
    n_val, z, y, x = out.shape
    sx = steps[2]
    if sx > 1:
        g = g[..., None].expand(*g.shape, sx).flatten(3)[..., :x]
    for zs, zc, rz in _repeat_regions(z, steps[0]):
        for ys, yc, ry in _repeat_regions(y, steps[1]):
            src = g[:, zc, yc]
            cz, cy = src.shape[1:3]
            dst = out[:, zs, ys].unflatten(2, (cy, ry)).unflatten(1, (cz, rz))  # views: splits only
            src = src[:, :, None, :, None]
            if accumulate:
                dst.add_(src)
            else:
                dst.copy_(src)


class _PoolKernel:
    """A normalised Gaussian kernel over position only: pool to cells, blur, repeat back.

    The smoothness kernel needs no intensity, so its bilateral grid is a regular grid of
    cells of ``s`` voxels per axis (about half the sigma): splatting is a sum over each cell
    (strided adds, no scatter), slicing repeats each cell's value over its voxels, and the
    symmetric normalisation ``N`` is constant within a cell, so it is applied on the grid.
    The same filter as a bilateral grid without intensity axes, with no per-voxel index.
    """

    def __init__(self, shape: tuple[int, int, int], sigma_vox: Sequence[float], device: torch.device) -> None:
        self.shape = tuple(shape)
        self.steps, cells, self.blur_sigmas = _cell_steps(shape, sigma_vox)
        counts = _pool(torch.ones((1,) + self.shape, device=device), self.steps)
        self.norm = torch.rsqrt(_blur_grid(counts, self.blur_sigmas).clamp_min(1e-20))  # (1, cells...)
        self.grid_of_ones = _blur_grid(counts.mul_(self.norm), self.blur_sigmas)  # B S N 1, for labels that sum to one
        # slabs of whole cells along z of about 2^18 voxels, for pooling and repeating piece by piece
        sz, per_plane = self.steps[0], self.shape[1] * self.shape[2]
        k = max(1, (1 << 18) // (sz * per_plane))
        self.slabs = [
            ((c0 * sz, min((c0 + k) * sz, self.shape[0])), (c0, min(c0 + k, cells[0]))) for c0 in range(0, cells[0], k)
        ]

    def splat(self, q: torch.Tensor, sums_to_one: bool = False) -> list[torch.Tensor]:
        """The blurred grids ``B S N q`` of ``q`` (labels, voxels): ``[labels or labels - 1, last]``.

        With ``sums_to_one`` (``q`` sums to 1 over the labels) the last label's grid is
        ``B S N 1`` minus the others': one label less is pooled and blurred.
        """
        n_val = q.shape[0]
        m = n_val - 1 if sums_to_one and n_val > 1 else n_val
        qv = q[:m].view((m,) + self.shape)
        g = torch.empty((m,) + tuple(self.norm.shape[1:]), device=q.device, dtype=torch.float32)
        for (z0, z1), (c0, c1) in self.slabs:  # slabs of planes: the intermediate arrays stay small
            g[:, c0:c1] = _pool(qv[:, z0:z1], self.steps)
        g.mul_(self.norm)
        for axis, sigma in enumerate(self.blur_sigmas):  # rebinding frees each input: two grids alive at most
            g = _blur_axis(g, axis + 1, sigma)
        return [g] if m == n_val else [g, self.grid_of_ones - g.sum(0, keepdim=True)]

    def slice(self, grids: list[torch.Tensor], out: torch.Tensor, weight: float, accumulate: bool = True) -> None:
        """``out (+)= weight * N S^T grids`` (``grids`` from :meth:`splat`; ``out`` may be the splatted ``q``)."""
        scale = self.norm if weight == 1.0 else self.norm * weight
        outv = out.view((out.shape[0],) + self.shape)
        row = 0
        for grid in grids:
            grid.mul_(scale)
            rows = slice(row, row + grid.shape[0])
            for (z0, z1), (c0, c1) in self.slabs:
                _unpool_into(grid[:, c0:c1], outv[rows, z0:z1], self.steps, accumulate)
            row += grid.shape[0]

    def apply(self, q: torch.Tensor, out: torch.Tensor, weight: float, accumulate: bool = True, sums_to_one: bool = False) -> None:
        """``out (+)= weight * N S^T B S N q`` for ``q`` and ``out`` of shape (labels, voxels)."""
        self.slice(self.splat(q, sums_to_one), out, weight, accumulate)


class _SparseSliceKernel:
    """What the bilateral grid and the lattice share: slicing through the sparse CSR matrix
    ``self.slice_matrix`` (``N S^T``, voxels x cells) and ``apply`` = ``slice(splat(q))``;
    subclasses build it and define ``splat``."""

    slice_matrix: torch.Tensor

    def splat(self, q: torch.Tensor, sums_to_one: bool = False) -> list[torch.Tensor]:
        raise NotImplementedError

    def slice(self, grids: list[torch.Tensor], out: torch.Tensor, weight: float, accumulate: bool = True) -> None:
        """``out (+)= weight * N S^T grids``, a sparse matrix-vector product per label (``out`` may be the splatted ``q``)."""
        for label, row in enumerate(grids):
            if weight != 1.0:  # on the (small) grid rather than on every voxel
                row.mul_(weight)
            if accumulate:
                torch.addmv(out[label], self.slice_matrix, row, out=out[label])
            else:
                torch.mv(self.slice_matrix, row, out=out[label])

    def apply(self, q: torch.Tensor, out: torch.Tensor, weight: float, accumulate: bool = True, sums_to_one: bool = False) -> None:
        """``out (+)= weight * N S^T B S N q`` for ``q`` and ``out`` of shape (labels, voxels)."""
        self.slice(self.splat(q, sums_to_one), out, weight, accumulate)


class _GridKernel(_SparseSliceKernel):
    """One normalised Gaussian kernel over position and intensity as a bilateral grid.

    Voxels are splatted to the nearest spatial cell (integer step ``s`` voxels per axis, about
    half the sigma) and linearly along each intensity channel (step one intensity sigma) into
    ``K = 2^channels`` corner cells; the grid is blurred so that splat + blur + slice has the
    kernel's variance; slicing uses the splat's weights, so the filter is a symmetric matrix
    ``N S^T B S N`` (``N`` the symmetric normalisation). Both ``S^T`` (voxels x cells, for the
    slice) and ``S`` (cells x voxels, for the splat) are sparse CSR matrices with 32-bit indices and ``N``
    folded into the values, so the slice and the splat are sparse matrix-vector products
    over contiguous label rows (MKL on a CPU, cuSPARSE on a GPU); on a CPU the splat is about
    twice as fast as a scatter (``index_add_``).
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        sigma_vox: Sequence[float],
        intensity: torch.Tensor,
        sigma_intensity: Sequence[float],
    ) -> None:
        device = intensity.device
        steps, cells, self.blur_sigmas = _cell_steps(shape, sigma_vox)
        self.grid_shape = list(cells)
        lowers, fractions = [], []
        for c in range(intensity.shape[0]):
            f = intensity[c].reshape(-1).float() / float(sigma_intensity[c])
            f -= f.min()
            lower = torch.floor(f)
            self.grid_shape.append(int(lower.max().item()) + 2)  # the upper bin of the largest value exists
            fractions.append(f.sub_(lower))
            lowers.append(lower)
            self.blur_sigmas.append(math.sqrt(2.0 / 3.0))  # 1 - 2 * (linear splat variance 1/6)
        n_ch, n = len(fractions), math.prod(shape)
        n_k = 1 << n_ch
        self.n, self.n_cells = n, math.prod(self.grid_shape)
        itype = torch.int32 if max(self.n_cells, n * n_k) < 2**31 - 1 else torch.int64
        # lowest corner cell of every voxel (C order over the grid axes)
        axes = [(torch.arange(m, device=device, dtype=itype) // st) for m, st in zip(shape, steps)]
        base = ((axes[0][:, None, None] * cells[1] + axes[1][None, :, None]) * cells[2] + axes[2][None, None, :]).reshape(-1)
        for c in range(n_ch):
            base = base * self.grid_shape[len(cells) + c] + lowers[c].to(itype)
        del lowers, axes
        strides = [math.prod(self.grid_shape[len(cells) + c + 1 :]) for c in range(n_ch)]
        corners = sorted(range(n_k), key=lambda m: sum(strides[c] for c in range(n_ch) if m >> c & 1))
        offsets = [sum(strides[c] for c in range(n_ch) if m >> c & 1) for m in corners]
        weights = []  # per corner (ascending offset), the voxels' linear weights
        for m in corners:
            w = torch.ones(n, device=device)
            for c in range(n_ch):
                w.mul_(fractions[c] if m >> c & 1 else 1.0 - fractions[c])
            weights.append(w)
        del fractions
        # the normalisation N = diag(K 1)^-1/2 with K = S^T B S, from S 1 by bincounts (no transpose needed)
        n_cells = self.n_cells
        ones_grid = torch.zeros(n_cells, device=device)
        for off, w in zip(offsets, weights):
            ones_grid[off:] += torch.bincount(base, weights=w, minlength=n_cells)[: n_cells - off]
        crow = torch.arange(0, n * n_k + 1, n_k, dtype=itype, device=device)
        col = torch.stack([base + off for off in offsets], 1).reshape(-1)
        val = torch.stack(weights, 1).reshape(-1)
        ones_grid = _blur_grid(ones_grid.view(1, *self.grid_shape), self.blur_sigmas).reshape(-1)
        norm = torch.rsqrt(torch.mv(_csr(crow, col, val, (n, n_cells)), ones_grid).clamp_min_(1e-20))
        del ones_grid
        val.view(n, n_k).mul_(norm[:, None])
        self.slice_matrix = _csr(crow, col, val, (n, n_cells))
        # splat = the transpose, from one stable sort of the voxels by their lowest corner: row r
        # holds, corner by corner, the voxels whose corner k is r (lowest corner r - offset_k),
        # each corner's voxels of a row a contiguous run in the sorted order
        order = _stable_order(base, n_cells)
        counts = torch.bincount(base, minlength=n_cells)
        del base
        row_len = torch.zeros(n_cells, dtype=counts.dtype, device=device)
        for off in offsets:
            row_len[off:] += counts[: n_cells - off]
        t_crow = torch.zeros(n_cells + 1, dtype=torch.int64, device=device)
        torch.cumsum(row_len, 0, out=t_crow[1:])
        group_start = torch.cumsum(counts, 0).sub_(counts)  # first sorted position of each lowest corner
        before = torch.zeros(n_cells, dtype=counts.dtype, device=device)  # a row's entries of earlier corners
        t_col = torch.empty(n * n_k, dtype=itype, device=device)
        t_val = torch.empty(n * n_k, device=device)
        order = order.to(itype)
        sorted_position = torch.arange(n, device=device, dtype=itype)
        for off, w in zip(offsets, weights):
            start = torch.zeros(n_cells, dtype=itype, device=device)  # where group c's run starts in row c + off
            start[: n_cells - off] = t_crow[off:n_cells] + before[off:] - group_start[: n_cells - off]
            pos = torch.repeat_interleave(start, counts, output_size=n).add_(sorted_position)
            t_col[pos] = order
            t_val[pos] = w.mul_(norm)[order]
            before[off:] += counts[: n_cells - off]
            del pos, start
        del order, counts, group_start, row_len, before, weights, norm, sorted_position
        self.splat_matrix = _csr(t_crow.to(itype), t_col, t_val, (n_cells, n))
        ones = torch.mv(self.splat_matrix, torch.ones(n, device=device)).view(1, *self.grid_shape)
        self.grid_of_ones = _blur_grid(ones, self.blur_sigmas)  # B S N 1, for labels that sum to one

    def splat(self, q: torch.Tensor, sums_to_one: bool = False) -> list[torch.Tensor]:
        """The blurred grids ``B S N q`` of ``q`` (labels, voxels), one row per label.

        Label-major rows: every label is one sparse matrix-vector product over a contiguous
        row. With ``sums_to_one`` (``q`` sums to 1 over the labels) the last label's grid is
        ``B S N 1`` minus the others': one label less is splatted and blurred.
        """
        n_val = q.shape[0]
        m = n_val - 1 if sums_to_one and n_val > 1 else n_val
        g = torch.empty(m, self.n_cells, device=q.device, dtype=torch.float32)
        for label in range(m):
            torch.mv(self.splat_matrix, q[label], out=g[label])
        g = g.view(m, *self.grid_shape)
        for axis, sigma in enumerate(self.blur_sigmas):  # rebinding frees each input: two grids alive at most
            g = _blur_axis(g, axis + 1, sigma)
        rows = list(g.reshape(m, self.n_cells))
        if m < n_val:
            rows.append((self.grid_of_ones - g.sum(0, keepdim=True)).reshape(-1))
        return rows


def _stable_order(keys: torch.Tensor, bound: int) -> torch.Tensor:
    """Indices that sort ``keys`` (1D, integers in ``[0, bound)``) stably, as int64.

    On a CPU, where key and position fit together in 63 bits, numpy sorts the packed values
    ``key * 2^b + position`` in place (a vectorised sort of plain integers: about twice as fast
    as an argsort) and the positions are the low ``b`` bits; else an argsort.

    Example:
        >>> _stable_order(torch.tensor([2, 0, 2, 1]), 3).tolist()
        [1, 3, 0, 2]
    """
    n = keys.numel()
    bits = max(1, (n - 1).bit_length())
    if keys.device.type != "cpu":
        return torch.argsort(keys, stable=True)
    if bound > 1 << (63 - bits):
        return torch.from_numpy(np.argsort(keys.numpy(), kind="stable"))
    packed = keys.to(torch.int64, copy=True).bitwise_left_shift_(bits)
    packed.bitwise_or_(torch.arange(n, dtype=torch.int64))
    values = packed.numpy()
    values.sort()
    values &= (1 << bits) - 1
    return packed


class _LatticeKernel(_SparseSliceKernel):
    """One normalised Gaussian kernel over position and intensity as a permutohedral lattice.

    The lattice of Adams, Baek & Davis (2010) exactly as pydensecrf builds it (same float32
    arithmetic, so the same vertices): every voxel's feature vector (``d`` values, from
    :func:`_lattice_features`: position along the input's axes and the intensity channels,
    each divided by its sigma) is lifted onto the plane ``sum = 0`` of ``d + 1`` dimensions and
    splatted with barycentric weights onto the ``d + 1`` vertices of its enclosing simplex; the
    occupied vertices are blurred with ``[1/2, 1, 1/2]`` along each of the ``d + 1`` lattice
    directions (a missing neighbour counts as zero) and sliced back with the same weights.
    Only occupied vertices exist, so the cost follows the number of voxels whatever the widths:
    the kernel for small sigmas, where a dense bilateral grid (:class:`_GridKernel`) has more
    cells than the volume has voxels. Splat and slice are sparse CSR matrix-vector products
    per label, with the symmetric normalisation ``N`` folded into their values; the blur is
    two index gathers per direction.

    Vertices are found by sorting, not hashing: voxels are grouped by simplex (one sort of
    ``N`` 64-bit codes), the vertices of the distinct simplices are sorted and made unique
    (``d + 1`` per simplex), and a vertex's neighbours are binary searches in that sorted list.
    """

    def __init__(self, features: torch.Tensor) -> None:
        d, n = features.shape
        device = features.device
        dp1 = d + 1
        # pydensecrf's constants: the scale of feature k is (1 / sqrt((k + 1)(k + 2))) times
        # sqrt(2/3)(d + 1) rounded to float32, and it multiplies by a float32 1 / (d + 1)
        inv_std = float(np.float32(math.sqrt(2.0 / 3.0) * dp1))
        down = float(np.float32(1.0 / dp1))
        cf = features.float() * torch.tensor(
            [1.0 / math.sqrt((k + 2) * (k + 1)) * inv_std for k in range(d)], device=device
        )[:, None]
        # elevated e_j = sum_{k >= j} cf_k - j cf_{j-1}, e_0 = sum_k cf_k, summed in float32 from
        # the last feature down as pydensecrf does: ties between remainders decide vertices
        elevated = torch.empty((dp1, n), device=device)
        running = torch.zeros(n, device=device)
        for j in range(d, 0, -1):
            torch.sub(running, j * cf[j - 1], out=elevated[j])
            running += cf[j - 1]
        elevated[0] = running
        del cf, running
        # nearest remainder-0 point (halves to even, as SSE rounding), the rank of every
        # coordinate's remainder (ties: the lower index ranks first), then back onto the plane
        rem0 = torch.round(elevated * down)
        excess = rem0.sum(0).to(torch.int8)
        rem0 *= dp1
        diff = elevated - rem0
        rank = torch.zeros((dp1, n), dtype=torch.int8, device=device)
        for i in range(dp1):
            for j in range(i + 1, dp1):
                ahead = torch.lt(diff[i], diff[j])
                rank[i] += ahead
                rank[j] += ahead.logical_not_()
        del ahead
        rank += excess
        del excess
        wrap = (rank < 0).to(torch.int8) - (rank > d).to(torch.int8)
        rank += dp1 * wrap
        rem0 += dp1 * wrap
        del wrap
        # barycentric weights: with v_k the scaled remainder of the coordinate of rank k,
        # b_0 = 1 + v_d - v_0 and b_p = v_{d-p} - v_{d-p+1}
        torch.sub(elevated, rem0, out=diff).mul_(down)
        del elevated
        by_rank = torch.empty_like(diff).scatter_(0, rank.long(), diff)
        del diff
        bary = torch.empty((n, dp1), device=device)  # voxel-major: the slice matrix's values
        torch.sub(by_rank[d], by_rank[0], out=bary[:, 0]).add_(1.0)
        for p in range(1, dp1):
            torch.sub(by_rank[d - p], by_rank[d - p + 1], out=bary[:, p])
        del by_rank
        # keys (the first d coordinates; they sum to 0) as mixed-radix int64 codes, with a margin
        # of d + 1 per digit so that a neighbour's code is the code plus a constant
        rem0 = rem0[:d].to(torch.int64)
        lo = rem0.amin(1) - 2 * dp1
        radix = [int(r) for r in (rem0.amax(1) - lo + 2 * dp1 + 1)]
        if math.prod(radix) * dp1**d >= 1 << 62:
            raise OverflowError("permutohedral simplex codes do not fit in 63 bits")
        strides = [math.prod(radix[i + 1 :]) for i in range(d)]
        total = sum(strides)
        # group the voxels by simplex (nearest point and ranks): code = key digits, then ranks
        code = torch.zeros(n, dtype=torch.int64, device=device)
        for i in range(d):
            code.add_(rem0[i] - lo[i], alpha=strides[i])
        code *= dp1**d
        for i in range(d):
            code.add_(rank[i], alpha=dp1**i)
        del rem0, rank
        order = _stable_order(code, math.prod(radix) * dp1**d)  # voxels grouped by simplex
        sorted_code = code[order]
        del code
        first = torch.ones(n, dtype=torch.bool, device=device)
        torch.ne(sorted_code[1:], sorted_code[:-1], out=first[1:])
        starts = first.nonzero().squeeze(1)  # where each simplex's run starts in ``order``
        counts = torch.diff(starts, append=torch.tensor([n], device=device))
        simplex_code = sorted_code[starts]
        n_simplex = int(starts.numel())
        simplex_of_voxel = torch.empty(n, dtype=torch.int64, device=device)
        simplex_of_voxel[order] = torch.cumsum(first, 0).sub_(1)
        del first, sorted_code
        # each simplex's vertex r: key_i = rem0_i + r - (d + 1) [rank_i > d - r]
        s_rank = torch.remainder(simplex_code, dp1**d)
        s_code = torch.sub(simplex_code, s_rank).div_(dp1**d, rounding_mode="floor")
        del simplex_code
        digits = [torch.remainder(torch.div(s_rank, dp1**i, rounding_mode="floor"), dp1) for i in range(d)]
        del s_rank
        vcodes = torch.empty((dp1, n_simplex), dtype=torch.int64, device=device)
        for r in range(dp1):
            torch.add(s_code, r * total, out=vcodes[r])
            for i in range(d):
                vcodes[r].sub_((digits[i] > d - r).to(torch.int64), alpha=dp1 * strides[i])
        del s_code, digits
        vorder = _stable_order(vcodes.view(-1), math.prod(radix))  # pair e = r * n_simplex + simplex
        sorted_v = vcodes.view(-1)[vorder]
        del vcodes
        new = torch.ones(sorted_v.numel(), dtype=torch.bool, device=device)
        torch.ne(sorted_v[1:], sorted_v[:-1], out=new[1:])
        self.unique = sorted_v[new]  # the vertices' codes, ascending
        m = int(self.unique.numel())
        del sorted_v
        itype = torch.int32 if max(m, n * dp1) < 2**31 - 1 else torch.int64
        vertex_sorted = torch.cumsum(new, 0).sub_(1)
        del new
        pair_vertex = torch.empty(dp1 * n_simplex, dtype=itype, device=device)
        pair_vertex[vorder] = vertex_sorted.to(itype)
        # the slice matrix S^T (voxels x vertices): voxel i's row holds its simplex's d + 1 vertices
        col_s = pair_vertex.view(dp1, n_simplex).t().contiguous()[simplex_of_voxel].view(-1)
        del simplex_of_voxel, pair_vertex
        crow_s = torch.arange(0, n * dp1 + 1, dp1, dtype=itype, device=device)
        val_s = bary.view(-1)
        # the splat matrix S (vertices x voxels): the (simplex, r) pairs sorted by vertex, each
        # contributing its simplex's run of voxels in ``order`` with weight b_r
        pair_r = torch.div(vorder, n_simplex, rounding_mode="floor")
        pair_s = vorder - pair_r * n_simplex
        del vorder
        run_len = counts[pair_s]
        t_crow = torch.zeros(m + 1, dtype=torch.int64, device=device)
        t_crow[1:].index_add_(0, vertex_sorted, run_len)
        t_crow.cumsum_(0)
        del vertex_sorted
        shift = starts[pair_s].sub_(torch.cumsum(run_len, 0).sub_(run_len))  # run start in ``order`` - start in the row
        del starts, counts, pair_s
        pos = torch.repeat_interleave(shift, run_len, output_size=n * dp1).add_(torch.arange(n * dp1, device=device))
        del shift
        t_col = order[pos]
        del pos, order
        # value b_r of voxel c: bary is (voxels, d + 1), so entry c * (d + 1) + r
        t_val = val_s[torch.repeat_interleave(pair_r, run_len, output_size=n * dp1).add_(t_col, alpha=dp1)]
        del pair_r, run_len
        t_col = t_col.to(itype)
        t_crow = t_crow.to(itype)
        # blur along direction j: +d on key coordinate j and -1 on the others (j = d: -1 on all),
        # as index pairs (n1, n2) into the values extended by one zero (index m: a missing
        # neighbour); n2(v) = u where n1(u) = v
        self.m = m
        self.neighbours = []
        for j in range(dp1):
            query = self.unique + ((dp1 * strides[j] if j < d else 0) - total)
            at = torch.searchsorted(self.unique, query).clamp_(max=m - 1)
            found = torch.eq(self.unique[at], query)
            del query
            n1 = torch.where(found, at, m)
            n2 = torch.full((m + 1,), m, dtype=torch.int64, device=device)
            n2.scatter_(0, n1, torch.arange(m, device=device))  # the not-found all land on the spare slot m
            self.neighbours.append((n1.to(itype), n2[:m].to(itype)))
            del at, found, n1, n2
        del self.unique
        # the normalisation N = diag(K 1)^-1/2, from the unnormalised filter of ones
        ones = torch.ones(n, device=device)
        norm = torch.mv(_csr(crow_s, col_s, val_s, (n, m)), self._blur(torch.mv(_csr(t_crow, t_col, t_val, (m, n)), ones)))
        norm.clamp_min_(1e-20).rsqrt_()
        bary.mul_(norm[:, None])
        t_val.mul_(norm[t_col])
        del norm
        self.slice_matrix = _csr(crow_s, col_s, val_s, (n, m))
        self.splat_matrix = _csr(t_crow, t_col, t_val, (m, n))
        self.grid_of_ones = self._blur(torch.mv(self.splat_matrix, ones))  # B S N 1, for labels that sum to one

    def _blur(self, g: torch.Tensor) -> torch.Tensor:
        """``g`` (m vertex values) blurred along the d + 1 directions: ``g + (g[n1] + g[n2]) / 2`` each."""
        m = self.m
        a = torch.empty(m + 1, device=g.device)
        a[:m] = g
        a[m] = 0.0
        b = torch.empty_like(a)
        b[m] = 0.0
        t1 = torch.empty(m, device=g.device)
        t2 = torch.empty(m, device=g.device)
        for n1, n2 in self.neighbours:
            torch.index_select(a, 0, n1, out=t1)
            torch.index_select(a, 0, n2, out=t2)
            t1.add_(t2)
            torch.add(a[:m], t1, alpha=0.5, out=b[:m])
            a, b = b, a
        return a[:m]

    def splat(self, q: torch.Tensor, sums_to_one: bool = False) -> list[torch.Tensor]:
        """The blurred lattice values ``B S N q`` of ``q`` (labels, voxels), one per label.

        With ``sums_to_one`` (``q`` sums to 1 over the labels) the last label's values are
        ``B S N 1`` minus the others': one label less is splatted and blurred.
        """
        n_val = q.shape[0]
        m = n_val - 1 if sums_to_one and n_val > 1 else n_val
        rows = [self._blur(torch.mv(self.splat_matrix, q[label])) for label in range(m)]
        if m < n_val:
            last = self.grid_of_ones.clone()
            for row in rows:
                last -= row
            rows.append(last)
        return rows


def _lattice_features(
    shape: tuple[int, int, int],
    sigma_vox: Sequence[float],
    intensity: torch.Tensor,
    sigma_intensity: Sequence[float],
    position_axes: Sequence[int] = (0, 1, 2),
) -> torch.Tensor:
    """(features, voxels): position / sigma along ``position_axes``, then intensity / sigma per channel.

    ``position_axes`` are the input's own axes, as pydensecrf sees them: ``(1, 2)`` for a 2D
    input (its added z axis is no feature), all three for a 3D one, even of one plane.
    """
    device = intensity.device
    axes = list(position_axes)
    n = math.prod(shape)
    feats = torch.empty((len(axes) + intensity.shape[0], n), device=device)
    for k, a in enumerate(axes):
        pos = torch.arange(shape[a], device=device, dtype=torch.float32) / float(sigma_vox[a])
        view = [1, 1, 1]
        view[a] = shape[a]
        feats[k].view(shape).copy_(pos.view(view).expand(shape))
    for c in range(intensity.shape[0]):
        torch.div(intensity[c].reshape(-1).float(), float(sigma_intensity[c]), out=feats[len(axes) + c])
    return feats


def _appearance_kernel(
    shape: tuple[int, int, int],
    sigma_vox: Sequence[float],
    intensity: torch.Tensor,
    sigma_intensity: Sequence[float],
    position_axes: Sequence[int] = (0, 1, 2),
) -> _GridKernel | _LatticeKernel:
    """The dense bilateral grid where it has few cells (wide kernels), else the permutohedral lattice.

    The grid costs in proportion to its cells, the lattice in proportion to the voxels (its
    construction dominates); the crossover measured on the 64x128x128 benchmark problem is
    about 3.4 cells per voxel. The grid also stands in where the lattice's codes would not
    fit in 63 bits (extreme feature ranges).
    """
    _, cells, _ = _cell_steps(shape, sigma_vox)
    n_cells = math.prod(cells)
    for c in range(intensity.shape[0]):
        span = float(intensity[c].max() - intensity[c].min()) / float(sigma_intensity[c])
        n_cells *= int(span) + 2
    if n_cells <= _GRID_CELLS_PER_VOXEL * math.prod(shape):
        return _GridKernel(shape, sigma_vox, intensity, sigma_intensity)
    try:
        return _LatticeKernel(_lattice_features(shape, sigma_vox, intensity, sigma_intensity, position_axes))
    except OverflowError:  # codes of more than 63 bits: extreme feature ranges
        return _GridKernel(shape, sigma_vox, intensity, sigma_intensity)


def _kernels(
    shape3: tuple[int, int, int],
    spacing3: Sequence[float],
    params: CRFParams,
    image: torch.Tensor,
    position_axes: Sequence[int] = (0, 1, 2),
) -> list[tuple[float, _PoolKernel | _GridKernel | _LatticeKernel]]:
    kernels = []
    if params.smoothness_weight > 0:
        sig = [params.smoothness_sigma / sp for sp in spacing3]
        kernels.append((float(params.smoothness_weight), _PoolKernel(shape3, sig, image.device)))
    if params.appearance_weight > 0:
        sig = [params.appearance_sigma / sp for sp in spacing3]
        n_ch = image.shape[0]
        sig_i = params.intensity_sigma
        sig_i = tuple(sig_i) if isinstance(sig_i, tuple) else (float(sig_i),) * n_ch
        if len(sig_i) != n_ch:
            raise ValueError(f"intensity_sigma has {len(sig_i)} values but the image has {n_ch} channels")
        kernels.append((float(params.appearance_weight), _appearance_kernel(shape3, sig, image, sig_i, position_axes)))
    return kernels


def _argmax_labels(q: torch.Tensor) -> torch.Tensor:
    """uint8 argmax over the label axis of ``(labels, voxels)`` (ties: the lower label).

    The row maximum (``amax``), then one comparison per label over contiguous rows, from the
    last label down so that the lowest tying label wins: ``q.argmax(0)`` strides across the
    rows and is about ten times slower on a CPU.
    """
    best = q.amax(dim=0)
    out = torch.full((q.shape[1],), q.shape[0] - 1, dtype=torch.uint8, device=q.device)
    for label in range(q.shape[0] - 2, -1, -1):
        out.masked_fill_(q[label] == best, label)
    return out


def _native_block(
    prob: np.ndarray,
    image: np.ndarray,
    spacing3: Sequence[float],
    params: CRFParams,
    mu: torch.Tensor,
    device: torch.device,
    energies: list[float] | None = None,
    normalise_last: bool = True,
    position_axes: Sequence[int] = (0, 1, 2),
) -> torch.Tensor:
    """Mean field on one block: ``prob`` (L, Z, Y, X), ``image`` (C, Z, Y, X) -> Q (L, voxels).

    With ``normalise_last=False`` the last iteration returns its logits instead of Q: the same
    argmax, one softmax less (for labels only). ``position_axes``: the input's own spatial
    axes (``(1, 2)`` for a 2D input), for the lattice's features.
    """
    n_labels = prob.shape[0]
    shape3 = tuple(prob.shape[1:])
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
    kernels = _kernels(shape3, spacing3, params, img, position_axes)  # first: its temporaries never meet the big buffers
    del img
    log_p = torch.empty((n_labels, math.prod(shape3)), dtype=torch.float32, device=device)
    for label in range(n_labels):  # a copy per label: no full-size temporary, never the caller's array
        log_p[label].copy_(torch.from_numpy(np.ascontiguousarray(prob[label]).reshape(-1)))
    log_p.clamp_(min=1e-8).log_()  # log p = -U (the unary), computed in our own buffer
    q = torch.softmax(log_p, dim=0)
    potts = bool(torch.equal(mu, 1 - torch.eye(n_labels, device=mu.device)))
    if energies is not None:
        energies.append(_energy(log_p, q, kernels, mu))
    for it in range(params.iterations):
        # every kernel splats Q onto its (small) grid first; then Q's buffer is free and takes the
        # message: two full-size buffers in all (log p and Q / message / logits)
        grids = [kernel.splat(q, sums_to_one=True) for _, kernel in kernels]
        for k, ((weight, kernel), grid) in enumerate(zip(kernels, grids)):
            kernel.slice(grid, q, weight, accumulate=k > 0)  # the first overwrites: no zeroing pass
        del grids
        if not kernels:
            q.zero_()
        # logits = -U - (sum_k w_k K_k Q) mu; for Potts (mu = 1 - I) that is -U + msg up to a
        # per-voxel constant, which the softmax ignores
        if potts:
            logits = q.add_(log_p)
        else:
            for lo in range(0, q.shape[1], 1 << 16):  # in chunks: the label mixing needs a temporary
                part = slice(lo, lo + (1 << 16))
                q[:, part] = torch.addmm(log_p[:, part], mu.T, q[:, part], alpha=-1.0)
            logits = q
        if it == params.iterations - 1 and not normalise_last and energies is None:
            return logits
        if logits.device.type == "cpu":  # the CPU softmax reads each voxel's logits before writing it
            q = torch.ops.aten._softmax.out(logits, 0, False, out=logits)
        else:
            q = torch.softmax(logits, dim=0)
        if energies is not None:
            energies.append(_energy(log_p, q, kernels, mu))
    return q


def _energy(
    log_p: torch.Tensor, q: torch.Tensor, kernels: list[tuple[float, _PoolKernel | _GridKernel | _LatticeKernel]], mu: torch.Tensor
) -> float:
    """Mean-field free energy ``<U> + 1/2 <pairwise> - H(Q)`` of ``q`` (float64 sum), ``U = -log_p``."""
    buf = torch.zeros_like(q)
    for weight, kernel in kernels:
        kernel.apply(q, buf, weight)
    pair = (torch.mm(mu.T, buf) * q).sum(dtype=torch.float64)
    ent = (q * torch.log(q.clamp_min(1e-30))).sum(dtype=torch.float64)
    return float(-(log_p * q).sum(dtype=torch.float64) + 0.5 * pair + ent)


def _block_starts(n: int, core: int) -> list[int]:
    return list(range(0, n, core)) if n > core else [0]


# --------------------------------------------------------------------------------------
# pydensecrf backend
# --------------------------------------------------------------------------------------


def _pydensecrf(prob: np.ndarray, image: np.ndarray, spacing: Sequence[float], params: CRFParams, mu: np.ndarray) -> np.ndarray:
    if not have_pydensecrf():
        raise ImportError(
            "the 'pydensecrf' backend needs the pydensecrf2 package, which builds from source with "
            "Cython < 3: run `bash scripts/setup.sh crf`, or use backend='native'"
        )
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian

    n_labels, spatial = prob.shape[0], prob.shape[1:]
    n = math.prod(spatial)
    crf = dcrf.DenseCRF(n, n_labels)
    unary = np.ascontiguousarray(-np.log(np.clip(prob.reshape(n_labels, n).astype(np.float32), 1e-8, None)))
    crf.setUnaryEnergy(unary)
    if params.smoothness_weight > 0:
        feats = create_pairwise_gaussian(tuple(params.smoothness_sigma / s for s in spacing), spatial)
        crf.addPairwiseEnergy(
            feats.astype(np.float32),
            compat=np.ascontiguousarray(params.smoothness_weight * mu, dtype=np.float32),
            kernel=dcrf.DIAG_KERNEL,
            normalization=dcrf.NORMALIZE_SYMMETRIC,
        )
    if params.appearance_weight > 0:
        n_ch = image.shape[0]
        sig_i = params.intensity_sigma
        sig_i = tuple(sig_i) if isinstance(sig_i, tuple) else (float(sig_i),) * n_ch
        feats = create_pairwise_bilateral(
            tuple(params.appearance_sigma / s for s in spacing), sig_i, image.astype(np.float32), chdim=0
        )
        crf.addPairwiseEnergy(
            feats.astype(np.float32),
            compat=np.ascontiguousarray(params.appearance_weight * mu, dtype=np.float32),
            kernel=dcrf.DIAG_KERNEL,
            normalization=dcrf.NORMALIZE_SYMMETRIC,
        )
    q = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    return q.reshape(prob.shape)


# --------------------------------------------------------------------------------------
# public interface
# --------------------------------------------------------------------------------------


class DenseCRF:
    """Fully connected CRF post-processing of class probabilities, 2D or 3D.

    Args:
        params: the model (:class:`CRFParams`, or a mapping of its fields).
        backend: ``"native"`` (PyTorch, CPU/GPU, blocks) or ``"pydensecrf"`` (optional C++ package).
        device: torch device of the native backend (default: CUDA when available, else CPU).
        block_voxels: the native backend splits volumes with more voxels than this into blocks
            (core plus halo on every side); each block's result is kept only in its core.
        halo: voxels of context around each block core per axis (default: 3 x the largest
            kernel sigma, in voxels of that axis).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> image = np.zeros((32, 32), np.uint8); image[:, 16:] = 200
        >>> truth = (image > 100).astype(int)
        >>> logits = 1.5 * np.eye(2)[truth].transpose(2, 0, 1) + rng.normal(0, 1.0, (2, 32, 32))
        >>> prob = np.exp(logits) / np.exp(logits).sum(0)
        >>> crf = DenseCRF(CRFParams(smoothness_sigma=1.0, appearance_sigma=5.0, intensity_sigma=20.0))
        >>> before = (prob.argmax(0) == truth).mean()
        >>> after = (crf.labels(prob, image) == truth).mean()
        >>> bool(after > before), bool(after > 0.99)
        (True, True)
    """

    def __init__(
        self,
        params: CRFParams | dict[str, Any] | None = None,
        backend: str = "native",
        device: str | torch.device | None = None,
        block_voxels: int = 1 << 23,
        halo: int | Sequence[int] | None = None,
    ) -> None:
        if params is None:
            params = CRFParams()
        elif isinstance(params, dict):
            params = CRFParams.from_dict(params)
        elif not isinstance(params, CRFParams):
            raise TypeError(f"params must be CRFParams or a dict, got {type(params).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown CRF backend {backend!r}; choose one of {list(BACKENDS)}")
        if isinstance(block_voxels, bool) or not isinstance(block_voxels, (int, np.integer)) or block_voxels < 1:
            raise ValueError(f"block_voxels must be a positive integer, got {block_voxels!r}")
        self.params = params
        self.backend = backend
        self.device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.block_voxels = int(block_voxels)
        self.halo = halo

    def __call__(
        self,
        prob: np.ndarray | torch.Tensor,
        image: np.ndarray | torch.Tensor,
        spacing: Sequence[float] | None = None,
        *,
        name: str = "input",
    ) -> np.ndarray:
        """Refined marginals: float32 array with the shape of ``prob`` ``(L, [Z,] Y, X)``.

        Args:
            prob: class probabilities, class axis first (float16/32/64).
            image: intensities ``([Z,] Y, X)`` or ``(C, [Z,] Y, X)``.
            spacing: physical voxel size per spatial axis (units of the sigmas; default 1).
            name: used in error messages (e.g. the input file name).
        """
        return self._run(prob, image, spacing, name=name, marginals=True)

    def labels(
        self,
        prob: np.ndarray | torch.Tensor,
        image: np.ndarray | torch.Tensor,
        spacing: Sequence[float] | None = None,
        *,
        name: str = "input",
    ) -> np.ndarray:
        """Refined labels (argmax of the marginals), uint8 ``([Z,] Y, X)``; keeps no full marginals."""
        return self._run(prob, image, spacing, name=name, marginals=False)

    def energies(
        self, prob: np.ndarray, image: np.ndarray, spacing: Sequence[float] | None = None, *, name: str = "input"
    ) -> list[float]:
        """Native backend, one block: the mean-field free energy before and after every iteration."""
        return mean_field_energy(prob, image, self.params, spacing, device=self.device, name=name)

    # ----------------------------------------------------------------------------------
    def _prepare(self, prob, image, spacing, name):
        n_labels, spatial, n_ch, spacing_t = check_crf_inputs(prob, image, spacing, name=name)
        mu = compatibility_matrix(self.params.compatibility, n_labels)
        prob_np = prob.detach().cpu().numpy() if isinstance(prob, torch.Tensor) else np.asarray(prob)
        img_np = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        img_np = img_np.reshape((n_ch,) + tuple(spatial))
        sig_i = self.params.intensity_sigma
        if isinstance(sig_i, tuple) and len(sig_i) != n_ch:
            raise ValueError(f"{name}: intensity_sigma has {len(sig_i)} values but the image has {n_ch} channel(s)")
        return n_labels, tuple(spatial), spacing_t, mu, prob_np, img_np

    def _run(self, prob, image, spacing, *, name: str, marginals: bool) -> np.ndarray:
        n_labels, spatial, spacing_t, mu, prob_np, img_np = self._prepare(prob, image, spacing, name)
        if self.backend == "pydensecrf":
            q = _pydensecrf(prob_np, img_np, spacing_t, self.params, mu)
            return q if marginals else q.argmax(0).astype(np.uint8)
        # native: work in 3D, a 2D input is one plane
        if len(spatial) == 2:
            prob3, img3, shape3 = prob_np[:, None], img_np[:, None], (1,) + spatial
            spacing3 = (1.0,) + spacing_t
        else:
            prob3, img3, shape3, spacing3 = prob_np, img_np, spatial, spacing_t
        mu_t = torch.from_numpy(mu).to(self.device)
        out = np.empty((n_labels,) + shape3, np.float32) if marginals else np.empty(shape3, np.uint8)
        for core, box in self._blocks(shape3, spacing3):
            block = tuple(slice(a, b) for a, b in box)
            q = _native_block(
                prob3[(slice(None),) + block], img3[(slice(None),) + block], spacing3, self.params, mu_t, self.device,
                normalise_last=marginals, position_axes=(1, 2) if len(spatial) == 2 else (0, 1, 2),
            )  # fmt: skip
            bshape = tuple(b - a for a, b in box)
            inner = tuple(slice(c0 - a, c1 - a) for (c0, c1), (a, _) in zip(core, box))
            dst = tuple(slice(c0, c1) for c0, c1 in core)
            if marginals:
                out[(slice(None),) + dst] = q.reshape((n_labels,) + bshape)[(slice(None),) + inner].cpu().numpy()
            else:
                out[dst] = _argmax_labels(q).reshape(bshape)[inner].cpu().numpy()
            del q
        if len(spatial) == 2:
            out = out[:, 0] if marginals else out[0]
        return out

    def _blocks(self, shape3, spacing3):
        """(core box, core+halo box) pairs covering the volume, as ((start, stop),) * 3."""
        if math.prod(shape3) <= self.block_voxels:
            yield tuple((0, n) for n in shape3), tuple((0, n) for n in shape3)
            return
        if self.halo is None:
            sigma = max(self.params.smoothness_sigma, self.params.appearance_sigma)
            halo = [int(math.ceil(3 * sigma / sp)) if n > 1 else 0 for sp, n in zip(spacing3, shape3)]
        else:
            h = [self.halo] * 3 if isinstance(self.halo, (int, np.integer)) else list(self.halo)
            halo = ([0] * (3 - len(h)) + h) if len(h) < 3 else h
        # equal cores along each axis, largest axes split first, until a haloed block fits
        splits = [1, 1, 1]
        while True:
            core = [math.ceil(n / k) for n, k in zip(shape3, splits)]
            if math.prod(min(c + 2 * h, n) for c, h, n in zip(core, halo, shape3)) <= self.block_voxels:
                break
            axis = max(range(3), key=lambda a: core[a] if core[a] > 1 else -1)
            if core[axis] <= 1:
                break
            splits[axis] += 1
        for z in _block_starts(shape3[0], core[0]):
            for y in _block_starts(shape3[1], core[1]):
                for x in _block_starts(shape3[2], core[2]):
                    c = [(s, min(s + k, n)) for s, k, n in zip((z, y, x), core, shape3)]
                    b = [(max(a - h, 0), min(e + h, n)) for (a, e), h, n in zip(c, halo, shape3)]
                    yield tuple(c), tuple(b)


def mean_field_energy(
    prob: np.ndarray,
    image: np.ndarray,
    params: CRFParams,
    spacing: Sequence[float] | None = None,
    *,
    device: str | torch.device = "cpu",
    name: str = "input",
) -> list[float]:
    """Free energy of the native mean-field iterates (before, and after each iteration), whole volume.

    ``F(Q) = sum_i <Q_i, U_i> + 1/2 sum_ij K~(i, j) Q_i^T mu Q_j + sum_i <Q_i, log Q_i>``, the
    quantity mean-field inference minimises (K~ is the weighted sum of the normalised kernels).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> p = rng.dirichlet(np.ones(3), size=(16, 16)).transpose(2, 0, 1)
        >>> e = mean_field_energy(p, rng.integers(0, 255, (16, 16)), CRFParams(iterations=3))
        >>> len(e), bool(e[-1] < e[0])
        (4, True)
    """
    crf = DenseCRF(params, device=device)
    n_labels, spatial, spacing_t, mu, prob_np, img_np = crf._prepare(prob, image, spacing, name)
    if len(spatial) == 2:
        prob_np, img_np, spacing_t = prob_np[:, None], img_np[:, None], (1.0,) + spacing_t
    energies: list[float] = []
    axes = (1, 2) if len(spatial) == 2 else (0, 1, 2)
    _native_block(
        prob_np, img_np, spacing_t, params, torch.from_numpy(mu).to(device), torch.device(device), energies, position_axes=axes
    )
    return energies
