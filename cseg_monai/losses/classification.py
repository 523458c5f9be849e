"""Voxel-wise classification losses with an ignore index, for sparse organelle labels.

Organelle classification assigns every voxel one class (cytoplasm, membrane,
mitochondrion, mitochondrion membrane, synapse, vesicle, ...). Labels are sparse: the
unlabelled ("undefined") voxels carry an *ignore index* and never contribute to the loss
or its gradient; they are never trained as a class.

Shapes accepted by both losses:

* ``input`` (logits, before the softmax): ``(B, C, *spatial)`` or ``(M, C)``;
* ``target`` (integer class ids): ``(B, *spatial)``, MONAI-style ``(B, 1, *spatial)``,
  or ``(M,)`` / ``(M, 1)`` for ``(M, C)`` logits.

The default ignore index is :data:`cseg_monai.common.constants.IGNORE_INDEX` ``= 255``: the project stores
semantic label volumes as ``uint8`` class ids (see :mod:`cseg_monai.data.phantom`), and
255 is the largest ``uint8`` value, so a sparse label stack can mark its undefined
voxels in the file itself, without a dtype change or a remapping transform (torch's
``-100`` cannot be stored in ``uint8``: it wraps to 156). Any other int may be passed.
An ``ignore_index`` inside ``[0, C)`` removes that class from the loss (torch's
semantics); the organelle pipelines should use a value outside the class range.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cseg_monai.common.constants import IGNORE_INDEX

__all__ = ["MaskedCrossEntropyLoss", "FocalLoss"]


_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------- validation
def _check_ignore_index(ignore_index: object) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r} ({type(ignore_index).__name__})")
    return int(ignore_index)


def _check_reduction(reduction: object) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return str(reduction)


def _check_class_weights(name: str, values: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    """``None`` or a 1D, finite, non-negative float tensor with at least one positive entry."""
    if values is None:
        return None
    try:
        w = torch.as_tensor(values, dtype=torch.float32).detach().clone()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a sequence of per-class floats, got {values!r}") from err
    if w.ndim != 1 or w.numel() == 0:
        raise ValueError(f"{name} must be a 1D sequence with one weight per class, got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise ValueError(f"{name} must be finite, got {w.tolist()}")
    if (w < 0).any():
        raise ValueError(f"{name} must be non-negative, got {w.tolist()}")
    if not (w > 0).any():
        raise ValueError(f"{name} must have at least one positive entry, got {w.tolist()}")
    return w


def _plain(x: torch.Tensor) -> torch.Tensor:
    """MONAI ``MetaTensor`` -> plain tensor (keeps the autograd graph)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def _prepare_inputs(
    input: torch.Tensor, target: torch.Tensor, ignore_index: int, weights: torch.Tensor | None, weights_name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate ``input``/``target``; return ``(logits, target, valid)``.

    ``target`` comes back as int64 with the channel dimension squeezed, shaped like
    ``input`` without its class dimension; ``valid`` is the bool mask of the voxels whose
    target is not ``ignore_index``.
    """
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(
            f"input and target must be torch tensors, got {type(input).__name__} and {type(target).__name__}"
        )
    input, target = _plain(input), _plain(target)
    if input.ndim < 2:
        raise ValueError(f"input must be logits shaped (B, C, *spatial) or (M, C), got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise ValueError(f"input must be floating-point logits, got dtype {input.dtype}")
    n_classes = input.shape[1]
    if n_classes < 2:
        raise ValueError(f"input must have at least 2 class channels (dim 1), got shape {tuple(input.shape)}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class ids, got dtype {target.dtype}")
    expected = (input.shape[0], *input.shape[2:])
    if target.ndim == input.ndim and target.shape[1] == 1:
        target = target.squeeze(1)
    if tuple(target.shape) != expected:
        raise ValueError(
            f"shape mismatch: input {tuple(input.shape)} needs target shaped {expected} or "
            f"{(input.shape[0], 1, *input.shape[2:])}, got {tuple(target.shape)}"
        )
    if target.device != input.device:
        raise ValueError(f"input is on {input.device} but target is on {target.device}")
    if not torch.isfinite(input).all():
        raise ValueError("input contains NaN or infinite logits")
    target = target.long()
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= n_classes))
    if bad.any():
        values = torch.unique(target[bad])[:10].tolist()
        raise ValueError(
            f"target holds class ids outside [0, {n_classes - 1}] that are not ignore_index={ignore_index}: {values}"
        )
    if weights is not None and weights.numel() != n_classes:
        raise ValueError(f"{weights_name} has {weights.numel()} entries but input has {n_classes} classes")
    return input, target, valid


# --------------------------------------------------------------------------- losses
class MaskedCrossEntropyLoss(nn.Module):
    """Cross entropy over the labelled voxels only; a validated wrapper of :func:`F.cross_entropy`.

    Same numbers as ``torch.nn.functional.cross_entropy(input, target, weight,
    ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)``
    (with ``weight``, the ``"mean"`` is divided by the summed weights of the labelled
    voxels, as in torch), plus:

    * MONAI-style targets ``(B, 1, *spatial)`` are accepted (the channel is squeezed);
    * inputs are checked up front (shapes, integer targets, class ids in ``[0, C)`` or
      ``ignore_index``, finite logits) and a :class:`ValueError` names the problem;
    * a batch whose voxels are all ignored gives ``0`` (with a gradient of zeros) instead
      of torch's ``NaN``.

    Args:
        ignore_index: target value of unlabelled voxels, excluded from the loss; any int,
            default :data:`~cseg_monai.common.constants.IGNORE_INDEX` (255).
        weight: optional per-class weights (length ``C``, finite, non-negative).
        label_smoothing: in ``[0, 1]``, as in torch.
        reduction: ``"mean"`` (over labelled voxels), ``"sum"`` or ``"none"`` (a loss per
            voxel shaped like the squeezed target, 0 at ignored voxels).

    Example:
        >>> import torch
        >>> loss = MaskedCrossEntropyLoss(ignore_index=255)
        >>> logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
        >>> target = torch.tensor([[[[0, 1], [255, 255]]]])  # (B, 1, H, W), two voxels unlabelled
        >>> round(loss(logits, target).item(), 4)  # log(3)
        1.0986
        >>> loss(logits, torch.full((1, 1, 2, 2), 255)).item()  # nothing labelled
        0.0
    """

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        weight: Sequence[float] | torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.ignore_index = _check_ignore_index(ignore_index)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
            raise ValueError(f"label_smoothing must be a float in [0, 1], got {label_smoothing!r}")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.reduction = _check_reduction(reduction)
        self.weight: torch.Tensor | None
        self.register_buffer("weight", _check_class_weights("weight", weight))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``input`` logits ``(B, C, *spatial)`` / ``(M, C)`` against integer ``target``."""
        logits, target, valid = _prepare_inputs(input, target, self.ignore_index, self.weight, "weight")
        weight = None if self.weight is None else self.weight.to(device=logits.device, dtype=logits.dtype)
        if self.reduction != "none" and not valid.any():
            return logits.sum() * 0.0  # all voxels unlabelled: 0, not torch's NaN (0 / 0)
        return F.cross_entropy(
            logits,
            target,
            weight=weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class FocalLoss(nn.Module):
    """Softmax focal loss computed per voxel, with an ignore index (Lin et al., ICCV 2017).

    For every labelled voxel ``i`` with true class ``y_i`` and softmax probability
    ``p_i = softmax(logits_i)[y_i]``::

        loss_i = -alpha[y_i] * (1 - p_i) ** gamma * log(p_i)

    and ``"mean"`` is ``sum_i loss_i / (number of labelled voxels)`` (an unweighted mean
    over voxels, also with ``alpha``; ``alpha=None`` means 1 for every class). So with
    ``gamma=0`` and no ``alpha`` it equals the cross entropy. The modulating factor
    multiplies each voxel's own cross entropy; it is NOT ``mean(CE) * mean((1-p)^gamma)``
    (what a broadcast of an ``(M,)`` by an ``(M, 1)`` tensor computes).

    Relation to :class:`monai.losses.FocalLoss`: with ``use_softmax=True,
    to_onehot_y=True, ignore_index=...`` (and a per-class ``alpha``) MONAI's loss gives
    the same ``"mean"`` (a test checks this). This class exists because MONAI's defaults
    are a sigmoid, one-hot oriented loss (``use_softmax=False``; a scalar ``alpha`` means
    background/foreground weighting), its ``"mean"`` without an ignore index averages
    over ``B * C * voxels`` (a factor ``1 / C`` smaller), its ``"none"`` output is per
    class channel, it does not validate class ids or logits, and its
    ``(1 - p) ** gamma`` has an infinite gradient at ``p = 1`` for ``0 < gamma < 1``.
    Here targets are integer class ids with any ignore index, ``"mean"`` is over labelled
    voxels only, and inputs are validated like :class:`MaskedCrossEntropyLoss`.

    Args:
        gamma: focusing parameter, ``>= 0`` (0 = cross entropy).
        ignore_index: target value of unlabelled voxels, excluded from the loss; any int,
            default :data:`~cseg_monai.common.constants.IGNORE_INDEX` (255).
        alpha: optional per-class weights (length ``C``, finite, non-negative).
        reduction: ``"mean"`` (over labelled voxels), ``"sum"`` or ``"none"`` (a loss per
            voxel shaped like the squeezed target, 0 at ignored voxels).

    Example:
        >>> import math, torch
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 3.0]])  # (M, C)
        >>> target = torch.tensor([0, 1, 255])  # last voxel unlabelled
        >>> p = torch.softmax(logits[:2], 1)[[0, 1], [0, 1]]  # true-class probabilities
        >>> by_hand = (-(1 - p) ** 2 * p.log()).mean()
        >>> math.isclose(FocalLoss(gamma=2.0)(logits, target).item(), by_hand.item(), rel_tol=1e-6)
        True
    """

    def __init__(
        self,
        gamma: float = 2.0,
        ignore_index: int = IGNORE_INDEX,
        alpha: Sequence[float] | torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
            raise ValueError(f"gamma must be a non-negative float, got {gamma!r}")
        if not (float(gamma) >= 0.0 and float(gamma) < float("inf")):
            raise ValueError(f"gamma must be a finite float >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.reduction = _check_reduction(reduction)
        self.alpha: torch.Tensor | None
        self.register_buffer("alpha", _check_class_weights("alpha", alpha))

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``input`` logits ``(B, C, *spatial)`` / ``(M, C)`` against integer ``target``."""
        logits, target, valid = _prepare_inputs(input, target, self.ignore_index, self.alpha, "alpha")
        safe_target = torch.where(valid, target, torch.zeros_like(target))  # any in-range id
        log_p = F.log_softmax(logits, dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)  # per voxel
        loss = -log_p
        if self.gamma != 0.0:
            # 1 - p computed as -expm1(log p) (accurate near p = 1); the clamp keeps the
            # gradient of (1 - p) ** gamma finite for 0 < gamma < 1 when p rounds to 1.
            one_minus_p = (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny)
            loss = loss * one_minus_p.pow(self.gamma)
        if self.alpha is not None:
            loss = loss * self.alpha.to(device=logits.device, dtype=logits.dtype)[safe_target]
        loss = torch.where(valid, loss, torch.zeros_like(loss))
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / valid.sum().clamp_min(1)  # all ignored: 0 with a (zero) gradient
