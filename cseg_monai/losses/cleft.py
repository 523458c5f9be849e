"""Losses for rare binary targets (synaptic clefts: often < 1% of a crop), on ONE logit channel.

Each crop ``b`` of a batch gets its own positive weight ``w_b = (1 - f_b) / f_b``, ``f_b`` the
fraction of its voxels that are positive, floored at ``min_fraction`` (1e-4) so that a crop with
no cleft gets a finite weight (it has no positive voxel to apply it to) and never divides by 0.
Positives of a crop weigh ``w_b``, negatives 1: positives and negatives then weigh the same in
total, whatever the crop's cleft density. (A crop that is all cleft gets ``w_b = 0``.)

* :class:`BalancedBinaryFocalLoss`: ``mean over voxels of a * (1 - p_t)**gamma * -log(p_t)``,
  ``p_t`` the sigmoid probability of the true class and ``a`` the voxel's weight (Lin et al. 2017,
  gamma 2): easy voxels (``p_t`` near 1) fade, so the mass of easy background stops dominating.
  With ``gamma = 0`` it is ``binary_cross_entropy_with_logits(pos_weight=w_b)`` per crop.
* :class:`BalancedBCEDiceLoss`: :class:`~cseg_monai.losses.WeightedBCEDiceLoss` with that weight map.

Example:
    >>> logits = torch.tensor([2.0, -1.0, 0.0, -3.0]).view(1, 1, 1, 2, 2)
    >>> target = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 2, 2)  # f = 1/4: the positive weighs 3
    >>> crop_positive_weight(target).tolist()
    [3.0]
    >>> loss = BalancedBinaryFocalLoss(gamma=0.0)(logits, target)
    >>> ref = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(3.0))
    >>> bool(torch.isclose(loss, ref))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cseg_monai.losses.boundary import WeightedBCEDiceLoss

__all__ = ["crop_positive_weight", "crop_weight_map", "BalancedBinaryFocalLoss", "BalancedBCEDiceLoss"]


def _check_pair(logits: torch.Tensor, target: torch.Tensor, who: str) -> None:
    if logits.ndim < 3 or logits.shape[1] != 1:
        raise ValueError(f"{who}: expected one logit channel (batch, 1, *spatial), got shape {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise ValueError(f"{who}: target {tuple(target.shape)} must have the logits' shape {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ValueError(f"{who}: the logits hold NaN or infinite values")
    if ((target != 0) & (target != 1)).any():
        raise ValueError(f"{who}: the target must be 0 / 1, got values {torch.unique(target)[:8].tolist()}")


def crop_positive_weight(target: torch.Tensor, min_fraction: float = 1e-4) -> torch.Tensor:
    """``(1 - f) / f`` per crop of a 0/1 ``target`` ``(B, 1, *spatial)``, ``f`` its positive fraction floored at ``min_fraction``.

    Example:
        >>> crop_positive_weight(torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]]), min_fraction=0.01).tolist()
        [1.0, 99.0]
    """
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must lie in (0, 1], got {min_fraction}")
    fraction = target.flatten(1).float().mean(1).clamp_min(min_fraction)
    return (1.0 - fraction) / fraction


def crop_weight_map(target: torch.Tensor, min_fraction: float = 1e-4) -> torch.Tensor:
    """Per-voxel weights: each crop's :func:`crop_positive_weight` on its positives, 1 on its negatives.

    Example:
        >>> crop_weight_map(torch.tensor([[[0.0, 0.0, 0.0, 1.0]]])).tolist()
        [[[1.0, 1.0, 1.0, 3.0]]]
    """
    w = crop_positive_weight(target, min_fraction).view(-1, *([1] * (target.ndim - 1))).to(target.dtype if target.is_floating_point() else torch.float32)
    return torch.where(target > 0, w, torch.ones_like(w))


class BalancedBinaryFocalLoss(nn.Module):
    """Binary focal loss on logits with the per-crop positive weight (see the module docstring).

    Args:
        gamma: focusing exponent (2 as in Lin et al.; 0 gives weighted BCE).
        min_fraction: the floor of a crop's positive fraction.
        balance: ``False`` weighs every voxel 1 (plain focal loss).

    Call with ``logits`` and a 0/1 ``target`` of the same shape ``(B, 1, *spatial)``.
    """

    def __init__(self, gamma: float = 2.0, min_fraction: float = 1e-4, balance: bool = True) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        crop_positive_weight(torch.zeros(1, 1), min_fraction)  # validates min_fraction
        self.gamma, self.min_fraction, self.balance = float(gamma), float(min_fraction), bool(balance)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = torch.as_tensor(logits), torch.as_tensor(target).to(torch.as_tensor(logits).dtype)
        _check_pair(logits, target, type(self).__name__)
        log_p = F.logsigmoid(logits)  # log p(cleft)
        log_q = F.logsigmoid(-logits)  # log p(background)
        log_pt = torch.where(target > 0, log_p, log_q)
        loss = -log_pt
        if self.gamma:
            loss = loss * (1.0 - log_pt.exp()).pow(self.gamma)
        if self.balance:
            loss = loss * crop_weight_map(target, self.min_fraction)
        return loss.mean()


class BalancedBCEDiceLoss(nn.Module):
    """Weighted BCE + soft Dice (:class:`~cseg_monai.losses.WeightedBCEDiceLoss`) with the per-crop weight map.

    Args:
        bce_weight / dice_weight: the two terms' factors.
        min_fraction: the floor of a crop's positive fraction.

    Example:
        >>> t = torch.zeros(2, 1, 2, 16, 16); t[0, 0, 1, 4:8, 4:8] = 1
        >>> float(BalancedBCEDiceLoss()(torch.full_like(t, -20.0), t)) > 0.5  # missing the cleft costs
        True
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, min_fraction: float = 1e-4) -> None:
        super().__init__()
        crop_positive_weight(torch.zeros(1, 1), min_fraction)
        self.min_fraction = float(min_fraction)
        self.inner = WeightedBCEDiceLoss(bce_weight=bce_weight, dice_weight=dice_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = torch.as_tensor(logits), torch.as_tensor(target).to(torch.as_tensor(logits).dtype)
        _check_pair(logits, target, type(self).__name__)
        return self.inner(logits, target, crop_weight_map(target, self.min_fraction))
