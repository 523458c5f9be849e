"""Checks of arrays that several layers share, each raising a ``ValueError`` that names the array.

Example:
    >>> check_instance_ids(np.array([[0, 2], [2, 1]])).shape
    (2, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_ANISOTROPY", "check_instance_ids", "check_spacing"]

#: Largest ratio of the coarsest to the finest voxel size accepted (serial-section EM reaches about 12).
MAX_ANISOTROPY = 20.0


def check_instance_ids(labels: Any, name: str = "labels") -> np.ndarray:
    """``labels`` as an array, checked to be 2D or 3D non-negative integer instance ids.

    Raises:
        ValueError: naming ``name``: not 2D/3D, not integer, negative ids.

    Example:
        >>> check_instance_ids(np.array([[0, 2], [2, 1]])).shape
        (2, 2)
    """
    lab = np.asarray(labels)
    if lab.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D (Y, X) or 3D (Z, Y, X) instance ids, got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{name} must hold integer instance ids, got dtype {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise ValueError(f"{name} has negative ids (ids must be non-negative)")
    return lab


def check_spacing(spacing: Any, ndim: int, name: str = "spacing", max_anisotropy: float | None = MAX_ANISOTROPY) -> list[float]:
    """``spacing`` as ``ndim`` plain floats, checked: finite, > 0, anisotropy at most ``max_anisotropy``.

    Args:
        spacing: voxel size per axis (a list, an array or a tensor, as read from a file).
        ndim: number of spatial axes it must have.
        name: what to name in the error (the file it came from, or ``--spacing``).
        max_anisotropy: refuse a coarsest / finest ratio above it (None: no limit); such a ratio
            is almost always axes in the wrong order or mixed units.

    Raises:
        ValueError: naming ``name`` and the problem.

    Example:
        >>> check_spacing([1.0, 0.2, 0.2], 3)
        [1.0, 0.2, 0.2]
        >>> check_spacing([25.0, 1.0, 1.0], 3, "--spacing")
        Traceback (most recent call last):
        ...
        ValueError: --spacing [25.0, 1.0, 1.0]: anisotropy 25 is above 20 (coarsest / finest voxel size): are the axes in (Z, Y, X) order and in one unit?
    """
    values = np.asarray(spacing.detach().cpu() if hasattr(spacing, "detach") else spacing, dtype=np.float64).reshape(-1)
    out = [float(v) for v in values]
    if len(out) != ndim or not all(np.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"{name} {out}: spacing must be {ndim} positive numbers (finite voxel sizes > 0, one per spatial axis)")
    ratio = max(out) / min(out)
    if max_anisotropy is not None and ratio > max_anisotropy:
        raise ValueError(
            f"{name} {out}: anisotropy {ratio:.3g} is above {max_anisotropy:.3g} (coarsest / finest voxel size): "
            "are the axes in (Z, Y, X) order and in one unit?"
        )
    return out
