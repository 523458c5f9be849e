"""The smoothness kernel of the native backend: a Gaussian over position only, on a regular grid.

Voxels are summed over cells of about half the spatial sigma (:func:`_pool`: strided adds, no
scatter), the cells are blurred by a separable Gaussian, and each cell's value is repeated
back over its voxels (:func:`_unpool_into`). See :class:`_PoolKernel`.

Example:
    >>> kernel = _PoolKernel((1, 12, 12), (1.0, 2.0, 2.0), torch.device("cpu"))
    >>> q = torch.full((2, 144), 0.5)
    >>> out = torch.empty_like(q)
    >>> kernel.apply(q, out, 1.0, accumulate=False)
    >>> bool(torch.allclose(out[0], out[1])), tuple(out.shape)  # labels with equal input get equal messages
    (True, (2, 144))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cseg_monai.postprocessing.crf.blur import _blur_axis, _blur_grid, _cell_steps


def _along(axis: int, index: slice) -> tuple[slice, ...]:
    """Index tuple selecting ``index`` along ``axis`` (everything along the axes before it)."""
    return (slice(None),) * axis + (index,)


def _pool(v: torch.Tensor, steps: Sequence[int]) -> torch.Tensor:
    """Sum over cells of ``steps`` voxels along the spatial axes 1.. of ``v`` (the last cell may be partial).

    Last axis first (it shrinks the data most); the whole cells of an axis as adds of strided
    slices, one pass over the data (a sum over a short strided axis is several times slower).
    """
    for axis in range(len(steps), 0, -1):
        s = steps[axis - 1]
        if s == 1:
            continue
        n = v.shape[axis]
        full = n // s
        shape = list(v.shape)
        shape[axis] = -(-n // s)
        out = torch.empty(shape, dtype=v.dtype, device=v.device)
        if full:
            head = out[_along(axis, slice(0, full))]
            torch.add(v[_along(axis, slice(0, full * s, s))], v[_along(axis, slice(1, full * s, s))], out=head)
            for r in range(2, s):
                head.add_(v[_along(axis, slice(r, full * s, s))])
        if n > full * s:  # the partial last cell
            torch.sum(v[_along(axis, slice(full * s, n))], dim=axis, keepdim=True, out=out[_along(axis, slice(full, None))])
        v = out
    return v


def _repeat_regions(n: int, s: int) -> list[tuple[slice, slice, int]]:
    """(voxel slice, cell slice, voxels per cell) pieces of an axis of ``n`` voxels in cells of ``s``."""
    full = n // s
    pieces = [(slice(0, full * s), slice(0, full), s)] if full else []
    if n > full * s:
        pieces.append((slice(full * s, n), slice(full, full + 1), n - full * s))
    return pieces


def _unpool_into(g: torch.Tensor, out: torch.Tensor, steps: Sequence[int], accumulate: bool) -> None:
    """``out (+)= g`` repeated over every cell's voxels (the transpose of :func:`_pool`), 3 spatial axes.

    ``g`` is first repeated along the last axis (a small copy, ``1 / (sz sy)`` of the volume);
    the other two axes are broadcast views: ``out`` is cut into at most 4 boxes of whole cells
    (the last, partial cell of an axis is a box of its own), each viewed as
    ``(labels, cz, sz, cy, sy, x)`` and updated by one broadcast operation over contiguous rows.
    """
    n_val, z, y, x = out.shape
    sx = steps[2]
    if sx > 1:
        g = g[..., None].expand(*g.shape, sx).flatten(3)[..., :x]
    for zs, zc, rz in _repeat_regions(z, steps[0]):
        for ys, yc, ry in _repeat_regions(y, steps[1]):
            src = g[:, zc, yc]
            cz, cy = src.shape[1:3]
            dst = out[:, zs, ys].unflatten(2, (cy, ry)).unflatten(1, (cz, rz))  # views: splits only
            src = src[:, :, None, :, None]
            if accumulate:
                dst.add_(src)
            else:
                dst.copy_(src)


class _PoolKernel:
    """A normalised Gaussian kernel over position only: pool to cells, blur, repeat back.

    The smoothness kernel needs no intensity, so its bilateral grid is a regular grid of
    cells of ``s`` voxels per axis (about half the sigma): splatting is a sum over each cell
    (strided adds, no scatter), slicing repeats each cell's value over its voxels, and the
    symmetric normalisation ``N`` is constant within a cell, so it is applied on the grid.
    The same filter as a bilateral grid without intensity axes, with no per-voxel index.
    """

    def __init__(self, shape: tuple[int, int, int], sigma_vox: Sequence[float], device: torch.device) -> None:
        self.shape = tuple(shape)
        self.steps, cells, self.blur_sigmas = _cell_steps(shape, sigma_vox)
        counts = _pool(torch.ones((1,) + self.shape, device=device), self.steps)
        self.norm = torch.rsqrt(_blur_grid(counts, self.blur_sigmas).clamp_min(1e-20))  # (1, cells...)
        self.grid_of_ones = _blur_grid(counts.mul_(self.norm), self.blur_sigmas)  # B S N 1, for labels that sum to one
        # slabs of whole cells along z of about 2^18 voxels, for pooling and repeating piece by piece
        sz, per_plane = self.steps[0], self.shape[1] * self.shape[2]
        k = max(1, (1 << 18) // (sz * per_plane))
        self.slabs = [((c0 * sz, min((c0 + k) * sz, self.shape[0])), (c0, min(c0 + k, cells[0]))) for c0 in range(0, cells[0], k)]

    def splat(self, q: torch.Tensor, sums_to_one: bool = False) -> list[torch.Tensor]:
        """The blurred grids ``B S N q`` of ``q`` (labels, voxels): ``[labels or labels - 1, last]``.

        With ``sums_to_one`` (``q`` sums to 1 over the labels) the last label's grid is
        ``B S N 1`` minus the others': one label less is pooled and blurred.
        """
        n_val = q.shape[0]
        m = n_val - 1 if sums_to_one and n_val > 1 else n_val
        qv = q[:m].view((m,) + self.shape)
        g = torch.empty((m,) + tuple(self.norm.shape[1:]), device=q.device, dtype=torch.float32)
        for (z0, z1), (c0, c1) in self.slabs:  # slabs of planes: the intermediate arrays stay small
            g[:, c0:c1] = _pool(qv[:, z0:z1], self.steps)
        g.mul_(self.norm)
        for axis, sigma in enumerate(self.blur_sigmas):  # rebinding frees each input: two grids alive at most
            g = _blur_axis(g, axis + 1, sigma)
        return [g] if m == n_val else [g, self.grid_of_ones - g.sum(0, keepdim=True)]

    def slice(self, grids: list[torch.Tensor], out: torch.Tensor, weight: float, accumulate: bool = True) -> None:
        """``out (+)= weight * N S^T grids`` (``grids`` from :meth:`splat`; ``out`` may be the splatted ``q``)."""
        scale = self.norm if weight == 1.0 else self.norm * weight
        outv = out.view((out.shape[0],) + self.shape)
        row = 0
        for grid in grids:
            grid.mul_(scale)
            rows = slice(row, row + grid.shape[0])
            for (z0, z1), (c0, c1) in self.slabs:
                _unpool_into(grid[:, c0:c1], outv[rows, z0:z1], self.steps, accumulate)
            row += grid.shape[0]

    def apply(
        self, q: torch.Tensor, out: torch.Tensor, weight: float, accumulate: bool = True, sums_to_one: bool = False
    ) -> None:
        """``out (+)= weight * N S^T B S N q`` for ``q`` and ``out`` of shape (labels, voxels)."""
        self.slice(self.splat(q, sums_to_one), out, weight, accumulate)
