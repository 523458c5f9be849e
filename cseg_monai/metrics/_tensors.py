"""Conversions shared by the metric modules."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (also a MONAI MetaTensor, on any device) or array-like as a numpy array.

    Half-precision floats become float32 (numpy has no bfloat16).

    Example:
        >>> to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype
        dtype('float32')
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if hasattr(t, "as_tensor"):  # MONAI MetaTensor -> plain tensor
            t = t.as_tensor()
        t = t.cpu()
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()
        return t.numpy()
    return np.asarray(x)
