"""Checks of arrays that several layers share, each raising a ``ValueError`` that names the array.

Example:
    >>> check_instance_ids(np.array([[0, 2], [2, 1]])).shape
    (2, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_instance_ids"]


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
