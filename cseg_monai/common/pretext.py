"""Tensor arithmetic shared by the pretext losses and their metrics: the masked-image-modelling
error on hidden voxels, and PixPro's positive pixel pairs and their feature similarity.

They live here, below both ``losses`` and ``metrics`` (one layer may not import the other), so
a loss and the metric that reports it compute the same number.

Example:
    >>> pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[3.0, 3.0], [3.0, 3.0]], [[1.0, 1.0], [0.0, 0.0]]]])
    >>> [x.item() for x in masked_error(pred, target, "l1")]  # two hidden voxels, each 3 away
    [6.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["cell_centres", "check_threshold", "masked_error", "pair_similarities", "positive_pairs", "positive_similarities"]


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


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float, or a ValueError: the positive-pair distance must be a number > 0.

    Example:
        >>> check_threshold(0.7)
        0.7
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a number > 0, got {threshold!r}")
    return float(threshold)


def pair_similarities(outputs: Sequence[torch.Tensor], coords: torch.Tensor, threshold: float = 0.7) -> torch.Tensor:
    """Summed cosine similarity and count, both directions, over PixPro's positive pairs and over
    the other pairs (cells showing other places): ``[positive total, positive count, other total, other count]``.

    A collapsed network (one feature everywhere) scores as high on the other pairs as on the positives.

    Args:
        outputs: the 8 outputs of :class:`cseg_monai.networks.PixPro` (the first four are used:
            the propagated online features of both views, then the target features of both).
        coords: the two views' coordinate maps ``(B, 2 n, *spatial)``
            (:class:`cseg_monai.transforms.PixProViewsd`'s label).
        threshold: positive pairs are closer than this many cell diagonals.

    Raises:
        ValueError: not 8 outputs, or coordinate maps that do not fit the features (named).

    Example:
        >>> ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
        >>> a = torch.stack([ys, xs])[None]
        >>> f = torch.ones(1, 3, 2, 2)  # collapsed: one feature everywhere
        >>> [round(x, 4) for x in pair_similarities([f] * 4 + [None] * 4, torch.cat([a, a], dim=1)).tolist()]  # 4 of 16 pairs positive
        [8.0, 8.0, 24.0, 24.0]
    """
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 8:
        raise ValueError("PixPro similarities take the 8 outputs of cseg_monai.networks.PixPro")
    y1, y2, t1, t2 = outputs[:4]
    dims = y1.ndim - 2
    if coords.ndim != dims + 2 or coords.shape[1] != 2 * dims:
        raise ValueError(f"the target must be the two views' coordinate maps (B, {2 * dims}, *spatial), got {tuple(coords.shape)}")
    pos = positive_pairs(coords[:, :dims], coords[:, dims:], y1.shape[2:], threshold).float()
    n = lambda t: F.normalize(t.flatten(2), dim=1)  # noqa: E731
    cos = torch.einsum("bdi,bdj->bij", n(y1), n(t2)) + torch.einsum("bdj,bdi->bij", n(y2), n(t1))
    return torch.stack([(cos * pos).sum(), 2 * pos.sum(), (cos * (1 - pos)).sum(), 2 * (1 - pos).sum()])


def positive_similarities(outputs: Sequence[torch.Tensor], coords: torch.Tensor, threshold: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cosine similarity over PixPro's positive pairs (both directions) and their count.

    The arguments and errors are :func:`pair_similarities`'.

    Example:
        >>> ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
        >>> a = torch.stack([ys, xs])[None]
        >>> f = torch.rand(1, 3, 2, 2)
        >>> total, count = positive_similarities([f] * 4 + [None] * 4, torch.cat([a, a], dim=1))
        >>> round(total.item() / count.item(), 4), count.item()  # identical views: every cell meets itself
        (1.0, 8.0)
    """
    total, count = pair_similarities(outputs, coords, threshold)[:2]
    return total, count
