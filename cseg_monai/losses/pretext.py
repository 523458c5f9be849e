"""Losses of the self-supervised pretexts: the masked VAE's reconstruction + KL objective, and
the masked-image-modelling error on the hidden voxels only, and PixPro's pixel-contrastive loss.

Example:
    >>> import torch
    >>> loss = VAELoss(kl_weight=0.0)
    >>> recon = torch.full((2, 1, 4, 4), 0.5)
    >>> loss((recon, torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2, 1, 4, 4)).item()
    0.25
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MaskedReconstructionLoss", "PixProLoss", "VAELoss", "cell_centres", "kl_divergence", "masked_error", "positive_pairs"]


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


def cell_centres(coords: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Where each feature cell of a ``grid`` lies in the original image: the mean coordinates of its pixels.

    Args:
        coords: ``(B, n, *spatial)``, for every pixel of a view its ``n`` coordinates in the original image.
        grid: the feature map's spatial shape (each side divides the view's).

    Returns:
        ``(B, cells, n)``.

    Example:
        >>> ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
        >>> cell_centres(torch.stack([ys, xs])[None], (2, 2))[0].tolist()
        [[0.5, 0.5], [0.5, 2.5], [2.5, 0.5], [2.5, 2.5]]
    """
    pool = F.adaptive_avg_pool2d if len(grid) == 2 else F.adaptive_avg_pool3d
    return pool(coords.float(), tuple(grid)).flatten(2).transpose(1, 2)


def positive_pairs(coords_1: torch.Tensor, coords_2: torch.Tensor, grid: Sequence[int], threshold: float = 0.7) -> torch.Tensor:
    """``(B, cells, cells)`` True where a cell of view 1 and one of view 2 are closer in the
    original image than ``threshold`` times the larger of the two views' cell diagonals (PixPro: 0.7).

    Example:
        >>> ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
        >>> a = torch.stack([ys, xs])[None]
        >>> positive_pairs(a, a + 2, (2, 2))[0].int().tolist()  # view 2 moved by one cell: only a's last cell meets b's first
        [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    """
    c1, c2 = cell_centres(coords_1, grid), cell_centres(coords_2, grid)
    diagonals = []
    for coords in (coords_1, coords_2):
        flat = coords.float().flatten(2)
        extent = flat.amax(dim=2) - flat.amin(dim=2) + 1.0  # (B, n): the view's extent in original pixels
        sides = extent / torch.tensor([float(g) for g in grid], device=coords.device)
        diagonals.append(sides.pow(2).sum(dim=1).sqrt())
    limit = threshold * torch.maximum(*diagonals)
    return torch.cdist(c1, c2) < limit[:, None, None]


class PixProLoss(nn.Module):
    """PixPro's pixel-propagation consistency on positive pairs plus a BYOL instance term.

    ``loss = -mean cos(y_1[i], x'_2[j]) - mean cos(y_2[j], x'_1[i])`` over the positive pairs ``(i, j)``
    (:func:`positive_pairs`), plus ``instance_weight * (4 - 2 cos(q_1, z'_2) - 2 cos(q_2, z'_1))``.

    Args:
        threshold: positive pairs are closer than this many cell diagonals (PixPro: 0.7).
        instance_weight: weight of the instance term (0: pixel terms only).

    The outputs are :class:`cseg_monai.networks.PixPro`'s; the target is the two views'
    coordinate maps ``(B, 2 n, *spatial)`` (:class:`cseg_monai.transforms.PixProViewsd`'s label).
    A batch with no positive pair contributes only its instance term.
    """

    def __init__(self, threshold: float = 0.7, instance_weight: float = 1.0) -> None:
        super().__init__()
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
            raise ValueError(f"threshold must be a number > 0, got {threshold!r}")
        if isinstance(instance_weight, bool) or not isinstance(instance_weight, (int, float)) or not instance_weight >= 0:
            raise ValueError(f"instance_weight must be a number >= 0, got {instance_weight!r}")
        self.threshold, self.instance_weight = float(threshold), float(instance_weight)

    def similarities(self, outputs: Sequence[torch.Tensor], coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cosine similarity over the positive pairs (both directions) and their count."""
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 8:
            raise ValueError("PixProLoss takes the 8 outputs of cseg_monai.networks.PixPro")
        y1, y2, t1, t2 = outputs[:4]
        dims = y1.ndim - 2
        if coords.ndim != dims + 2 or coords.shape[1] != 2 * dims:
            raise ValueError(f"the target must be the two views' coordinate maps (B, {2 * dims}, *spatial), got {tuple(coords.shape)}")
        pos = positive_pairs(coords[:, :dims], coords[:, dims:], y1.shape[2:], self.threshold).float()
        n = lambda t: F.normalize(t.flatten(2), dim=1)  # noqa: E731
        cos12 = torch.einsum("bdi,bdj->bij", n(y1), n(t2))
        cos21 = torch.einsum("bdj,bdi->bij", n(y2), n(t1))
        return ((cos12 + cos21) * pos).sum(), 2 * pos.sum()

    def forward(self, outputs: Sequence[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
        total, count = self.similarities(outputs, coords)
        pixel = -2.0 * total / count.clamp_min(1.0)  # two directions, each a mean
        q1, q2, z1, z2 = outputs[4:]
        instance = (4.0 - 2.0 * F.cosine_similarity(q1, z2, dim=1) - 2.0 * F.cosine_similarity(q2, z1, dim=1)).mean()
        return pixel + self.instance_weight * instance
