"""Conversions shared by the metric modules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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


def channel_first_pairs(output: Sequence[Any], ndim: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(prediction, truth)`` numpy pairs of an Ignite ``(y_pred, y)`` output: lists (or batches) of
    items, each without its leading channel axis when both have one of length 1 (and, with
    ``ndim``, only when the item has ``ndim`` axes).

    Raises:
        ValueError: not as many predictions as ground truths.

    Example:
        >>> [p.shape for p, _ in channel_first_pairs(([np.zeros((1, 2, 3))], [np.zeros((1, 2, 3))]))]
        [(2, 3)]
    """
    pred, true = output
    preds, trues = list(pred), list(true)
    if len(preds) != len(trues):
        raise ValueError(f"{len(preds)} predictions for {len(trues)} ground truths")
    for p, t in zip(preds, trues):
        p, t = to_numpy(p), to_numpy(t)
        if p.ndim == t.ndim and p.shape[0] == 1 and (ndim is None or p.ndim == ndim):
            p, t = p[0], t[0]
        yield p, t
