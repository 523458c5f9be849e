"""Losses of the self-supervised pretexts: the masked VAE's reconstruction + KL objective.

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

__all__ = ["VAELoss", "kl_divergence"]


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
