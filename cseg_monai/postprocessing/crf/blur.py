"""Regular-grid helpers of the native kernels: Gaussian taps, the separable blur, the grid steps.

The pooled smoothness kernel and the bilateral grid both sum voxels into cells of about half
the spatial sigma (:func:`_cell_steps`) and blur the cells with a separable Gaussian
(:func:`_blur_axis`, :func:`_blur_grid`) whose width makes up the rest of the kernel's variance.

Example:
    >>> steps, cells, blur = _cell_steps((1, 20, 20), (1.0, 4.0, 4.0))
    >>> steps, cells
    ([1, 2, 2], [1, 10, 10])
    >>> grid = torch.zeros(1, 1, 9); grid[0, 0, 4] = 1.0
    >>> round(float(_blur_grid(grid, (0.0, 1.0)).sum()), 4)  # the blur keeps the mass of a centred delta
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Spatial grid step of the native backend, in units of the spatial sigma: smaller is more
# exact and slower. Along intensity channels the step is one intensity sigma (linear splat).
_SPATIAL_STEP = 0.5


def _gaussian_taps(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _blur_axis(grid: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian along ``axis`` with zeros beyond the grid (a symmetric linear map)."""
    n = grid.shape[axis]
    if sigma < 1e-3 or n == 1:
        return grid
    taps = _gaussian_taps(sigma).to(grid.device)
    radius = taps.numel() // 2
    pre, post = math.prod(grid.shape[:axis]), math.prod(grid.shape[axis + 1 :])
    flat = grid.reshape(pre, n, post)
    if n <= 24 * taps.numel():  # BLAS with the banded matrix beats shifted adds on short axes
        offsets = torch.arange(n, device=grid.device)
        diff = offsets[:, None] - offsets[None, :]
        band = torch.where(diff.abs() <= radius, taps[(diff + radius).clamp(0, 2 * radius)], torch.zeros((), device=grid.device))
        if post == 1:  # the last axis: one GEMM, (pre, n) @ band^T (band is symmetric)
            return torch.mm(flat.reshape(pre, n), band).reshape(grid.shape)
        return torch.matmul(band, flat).reshape(grid.shape)
    weights = taps.tolist()
    out = flat * weights[radius]
    for k in range(1, min(radius, n - 1) + 1):  # in-place scaled adds, no temporaries
        out[:, k:].add_(flat[:, :-k], alpha=weights[radius + k])
        out[:, :-k].add_(flat[:, k:], alpha=weights[radius - k])
    return out.reshape(grid.shape)


def _blur_grid(grid: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """The separable Gaussian of :func:`_blur_axis` along grid axes 1, 2, ... (axis 0: labels).

    The caller's reference keeps ``grid`` alive during the call; the hot paths inline this
    loop so that each input is freed as soon as the next axis is done.
    """
    for axis, sigma in enumerate(sigmas):
        grid = _blur_axis(grid, axis + 1, sigma)
    return grid


def _cell_steps(shape: Sequence[int], sigma_vox: Sequence[float]) -> tuple[list[int], list[int], list[float]]:
    """Grid step (voxels), number of cells and blur sigma (cells) per spatial axis of a kernel.

    The step is about half the sigma; nearest-cell splatting of integer positions into cells
    of ``s`` voxels has variance ``(s^2 - 1) / 12`` (splat and slice: twice that), and the blur
    makes up the rest of the kernel's variance.
    """
    steps = [max(1, int(round(_SPATIAL_STEP * s))) if n > 1 else 1 for s, n in zip(sigma_vox, shape)]
    cells = [(n + s - 1) // s for n, s in zip(shape, steps)]
    blur = [
        math.sqrt(max(sv * sv - 2.0 * (s * s - 1) / 12.0, 0.0)) / s if n > 1 else 0.0 for sv, s, n in zip(sigma_vox, steps, shape)
    ]
    return steps, cells, blur
