"""Losses of the self-supervised pretexts: the masked VAE's reconstruction + KL objective, and
the masked-image-modelling error on the hidden voxels only.

Example:
    >>> import torch
    >>> loss = VAELoss(kl_weight=0.0)
    >>> recon = torch.full((2, 1, 4, 4), 0.5)
    >>> loss((recon, torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2, 1, 4, 4)).item()
    0.25
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["MaskedReconstructionLoss", "VAELoss", "kl_divergence", "masked_error"]


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), summed over the latent axis, averaged over the batch.

    ``-0.5 * sum(1 + logvar - mean^2 - exp(logvar))``.

    Example:
        >>> kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item()
        0.0
        >>> round(kl_divergence(torch.tensor([[1.0]]), torch.log(torch.tensor([[2.0]]))).item(), 4)  # 0.5 (2 + 1 - 1 - ln 2)
        0.6534
    """
    if mean.shape != logvar.shape or mean.ndim != 2:
        raise ValueError(f"mean and logvar must both be (batch, latent), got {tuple(mean.shape)} and {tuple(logvar.shape)}")
    return (-0.5 * (1.0 + logvar - mean.pow(2) - logvar.exp()).sum(dim=1)).mean()



class VAELoss(nn.Module):
    """``reconstruction error + kl_weight * KL``, for ``(reconstruction, mean, logvar)`` outputs.

    Args:
        kl_weight: weight of :func:`kl_divergence` (>= 0; 0: a plain autoencoder objective).
        reconstruction: ``"mse"`` or ``"l1"``, the mean over voxels.

    The KL is per patch (summed over the code) and the reconstruction error per voxel, so
    ``kl_weight`` compares the two at that scale: about ``1 / voxels per patch`` is the
    standard evidence lower bound up to the noise variance.
    """

    def __init__(self, kl_weight: float = 1e-4, reconstruction: str = "mse") -> None:
        super().__init__()
        if isinstance(kl_weight, bool) or not isinstance(kl_weight, (int, float)) or not kl_weight >= 0 or kl_weight == float("inf"):
            raise ValueError(f"kl_weight must be a finite number >= 0, got {kl_weight!r}")
        if reconstruction not in ("mse", "l1"):
            raise ValueError(f"reconstruction must be 'mse' or 'l1', got {reconstruction!r}")
        self.kl_weight = float(kl_weight)
        self.error = nn.MSELoss() if reconstruction == "mse" else nn.L1Loss()

    def forward(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, (tuple, list)) or len(output) != 3:
            raise ValueError("VAELoss takes the (reconstruction, mean, logvar) a CentreVoxelVAE returns")
        recon, mean, logvar = output
        if recon.shape != target.shape:
            raise ValueError(f"reconstruction {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
        return self.error(recon, target) + self.kl_weight * kl_divergence(mean, logvar)


def masked_error(pred: torch.Tensor, target_and_mask: torch.Tensor, kind: str = "mse") -> tuple[torch.Tensor, torch.Tensor]:
    """Summed error over the masked voxels and their count, for a ``(B, C + 1, ...)`` target.

    ``target_and_mask`` is what :class:`cseg_monai.transforms.MaskCubesd` writes (batched): the
    ``C`` original channels, then the mask (1 = hidden). The count is of masked voxels times ``C``.

    Raises:
        ValueError: an unknown ``kind``; shapes that do not fit (named).

    Example:
        >>> pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[2.0, 2.0], [2.0, 2.0]], [[1.0, 0.0], [0.0, 0.0]]]])
        >>> [x.item() for x in masked_error(pred, target)]
        [4.0, 1.0]
    """
    if kind not in ("mse", "l1"):
        raise ValueError(f"the reconstruction error must be 'mse' or 'l1', got {kind!r}")
    batch, channels = tuple(pred.shape[:2]), pred.shape[1] if pred.ndim > 1 else 0
    if pred.ndim < 3 or tuple(target_and_mask.shape[:2]) != (batch[0], channels + 1) or target_and_mask.shape[2:] != pred.shape[2:]:
        raise ValueError(
            f"a masked reconstruction needs a prediction (B, C, *spatial) and a target (B, C + 1, *spatial) holding the "
            f"C original channels and the mask (what MaskCubesd writes), got {tuple(pred.shape)} and {tuple(target_and_mask.shape)}"
        )
    target, mask = target_and_mask[:, :channels], target_and_mask[:, channels:]
    diff = pred.float() - target.float()
    error = diff.abs() if kind == "l1" else diff.pow(2)
    return (error * mask).sum(), mask.sum() * channels


class MaskedReconstructionLoss(nn.Module):
    """The mean error over the masked voxels only (masked image modelling), MSE or L1.

    Args:
        kind: ``"mse"`` or ``"l1"``.

    The target is ``(B, C + 1, *spatial)``: the original and the mask, as
    :class:`cseg_monai.transforms.MaskCubesd` writes it; a batch without masked voxels gives 0.

    Example:
        >>> pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[2.0, 5.0], [5.0, 5.0]], [[1.0, 0.0], [0.0, 0.0]]]])
        >>> MaskedReconstructionLoss("l1")(pred, target).item()
        2.0
    """

    def __init__(self, kind: str = "mse") -> None:
        super().__init__()
        if kind not in ("mse", "l1"):
            raise ValueError(f"kind must be 'mse' or 'l1', got {kind!r}")
        self.kind = kind

    def forward(self, pred: torch.Tensor, target_and_mask: torch.Tensor) -> torch.Tensor:
        total, count = masked_error(pred, target_and_mask, self.kind)
        return total / count.clamp_min(1.0)
