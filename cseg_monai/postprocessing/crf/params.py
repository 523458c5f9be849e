"""The CRF's parameters and input checks: :class:`CRFParams`, label compatibilities, input validation.

Everything here is plain NumPy (no kernels): the parameters of the model (kernel weights and
widths in physical units, mean-field iterations, the label compatibility ``mu``), the Potts
and organelle compatibility presets, and the checks that name the input and the problem
before any work is done.

Example:
    >>> CRFParams(iterations=3).to_dict()["iterations"]
    3
    >>> compatibility_matrix("organelle", 6).shape
    (6, 6)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cseg_monai.common.checks import check_spacing
from cseg_monai.common.constants import ORGANELLE_CLASSES

__all__ = ["BACKENDS", "CRFParams", "check_crf_inputs", "compatibility_matrix", "organelle_compatibility"]

#: The backends of :class:`~cseg_monai.postprocessing.crf.DenseCRF`.
BACKENDS = ("native", "pydensecrf")

# Pairs that cannot touch in EM of neural tissue, for the organelle preset: a mitochondrion's
# interior is wrapped in its own membrane, so it never borders cytoplasm, cell membrane,
# synapses or vesicles directly; vesicles sit in the cytoplasm, not on a mitochondrion.
_ORGANELLE_IMPOSSIBLE = (
    ("mitochondrion", "cytoplasm"),
    ("mitochondrion", "membrane"),
    ("mitochondrion", "synapse"),
    ("mitochondrion", "vesicle"),
    ("mitochondrion membrane", "synapse"),
    ("mitochondrion membrane", "vesicle"),
)

# Largest accepted deviation of a voxel's probabilities from summing to one.
_SUM_TOLERANCE = 1e-2


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
        compatibility: ``"potts"``, ``"organelle"`` (the preset for
            :data:`~cseg_monai.common.constants.ORGANELLE_CLASSES`), or a
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
            >>> CRFParams.from_dict({"iteration": 2})  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: unknown CRF parameter(s) ['iteration']; known: ['appearance_sigma', ..., 'smoothness_weight']
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown CRF parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> CRFParams:
        """A copy with ``changes`` applied (validated again).

        Example:
            >>> CRFParams().replace(smoothness_weight=0.0).smoothness_weight
            0.0
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the inverse of :meth:`from_dict`).

        Example:
            >>> CRFParams(intensity_sigma=(5.0, 8.0)).to_dict()["intensity_sigma"]
            [5.0, 8.0]
        """
        out = dataclasses.asdict(self)
        if isinstance(out["intensity_sigma"], tuple):
            out["intensity_sigma"] = list(out["intensity_sigma"])
        if isinstance(out["compatibility"], np.ndarray):
            out["compatibility"] = out["compatibility"].tolist()
        return out


def _finite_number(value: Any) -> bool:
    """Whether ``value`` is a real, finite number (not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def organelle_compatibility(impossible_cost: float = 3.0) -> np.ndarray:
    """Compatibility of the organelle preset over :data:`~cseg_monai.common.constants.ORGANELLE_CLASSES`.

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
        spacing_t = tuple(check_spacing(spacing, len(spatial), f"{name}: spacing", max_anisotropy=None))
    return n_labels, spatial, n_channels, spacing_t
