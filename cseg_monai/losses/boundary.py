"""Weighted BCE + Dice for boundary (and foreground) maps, with ONE sigmoid.

``loss = bce_weight * sum(w * BCE(logits, t)) / sum(w) + dice_weight * (1 - Dice_w)`` where
``BCE`` is ``binary_cross_entropy_with_logits`` (the sigmoid is applied exactly once, inside
it, and once for the Dice probabilities), ``w`` is the per-voxel weight map (e.g. the U-Net map
of :mod:`cseg_monai.transforms.instance_targets`; every voxel keeps a positive weight), and
``Dice_w = (2 sum(w p t) + eps) / (sum(w p) + sum(w t) + eps)`` per channel, averaged over
channels. The network must output logits: passing probabilities would square the sigmoid,
so outputs already in [0, 1] everywhere trigger a warning once.

Example:
    >>> logits = torch.tensor([[[[2.0, -2.0]]]]); target = torch.tensor([[[[1.0, 0.0]]]])
    >>> weight = torch.tensor([[[[1.0, 3.0]]]])
    >>> loss = WeightedBCEDiceLoss(dice_weight=0.0)(logits, target, weight)
    >>> expected = torch.nn.functional.softplus(torch.tensor(-2.0))  # both voxels have BCE softplus(-2)
    >>> bool(torch.isclose(loss, expected))
    True
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WeightedBCEDiceLoss"]


class WeightedBCEDiceLoss(nn.Module):
    """Weighted binary cross-entropy plus weighted soft Dice on logits.

    Args:
        bce_weight: factor of the BCE term (>= 0).
        dice_weight: factor of the Dice term (>= 0).
        eps: smoothing of the Dice ratio.
        packed_weight: the target carries the weight map as its LAST channel (``C + 1``
            channels): a MONAI ``SupervisedTrainer`` passes only ``(pred, label)`` to the loss.

    Call with ``logits``, ``target`` (0/1, same shape ``(B, C, *spatial)``) and optionally
    ``weight`` (same shape, or one channel broadcast over ``C``; default all ones).
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, eps: float = 1e-6, packed_weight: bool = False) -> None:
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(f"bce_weight and dice_weight must be >= 0 and not both 0, got {bce_weight}, {dice_weight}")
        self.bce_weight, self.dice_weight, self.eps = float(bce_weight), float(dice_weight), float(eps)
        self.packed_weight = bool(packed_weight)
        self._warned = False

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        logits, target = torch.as_tensor(logits), torch.as_tensor(target)
        if self.packed_weight:
            if weight is not None:
                raise ValueError("packed_weight=True takes the weight from the target's last channel: do not pass weight")
            if target.ndim != logits.ndim or target.shape[1] != logits.shape[1] + 1:
                raise ValueError(
                    f"packed_weight=True needs a target with one channel more than the logits (the weight), "
                    f"got target {tuple(target.shape)} for logits {tuple(logits.shape)}"
                )
            target, weight = target[:, :-1], target[:, -1:]
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
        if logits.ndim < 3:
            raise ValueError(f"expected (batch, channels, *spatial) tensors, got shape {tuple(logits.shape)}")
        target = target.to(logits.dtype)
        if weight is None:
            weight = torch.ones_like(logits)
        else:
            weight = torch.as_tensor(weight).to(logits.dtype)
            if weight.shape != logits.shape:
                if weight.shape[0] == logits.shape[0] and weight.shape[1] == 1 and weight.shape[2:] == logits.shape[2:]:
                    weight = weight.expand_as(logits)
                else:
                    raise ValueError(f"weight {tuple(weight.shape)} must match the logits {tuple(logits.shape)} (or have 1 channel)")
            if (weight < 0).any():
                raise ValueError("weights must be >= 0")
        if not self._warned and logits.numel() > 16 and 0 <= logits.min() < logits.max() <= 1:
            warnings.warn("WeightedBCEDiceLoss got values in [0, 1] only: pass logits, not sigmoid outputs", stacklevel=2)
            self._warned = True
        loss = logits.new_zeros(())
        if self.bce_weight:
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            loss = loss + self.bce_weight * (weight * bce).sum() / weight.sum().clamp_min(self.eps)
        if self.dice_weight:
            prob = torch.sigmoid(logits)
            dims = (0,) + tuple(range(2, logits.ndim))
            inter = (weight * prob * target).sum(dims)
            denom = (weight * prob).sum(dims) + (weight * target).sum(dims)
            dice = (2 * inter + self.eps) / (denom + self.eps)
            loss = loss + self.dice_weight * (1 - dice.mean())
        return loss
