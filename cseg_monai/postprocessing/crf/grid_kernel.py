"""The appearance kernel as a bilateral grid (position and intensity), for wide kernels.

See :class:`_GridKernel`: nearest spatial cell, linear along each intensity channel, a
separable blur, and splat and slice as sparse CSR matrix-vector products.

Example:
    >>> image = torch.arange(64.0).reshape(1, 1, 8, 8)
    >>> kernel = _GridKernel((1, 8, 8), (1.0, 4.0, 4.0), image, [20.0])
    >>> q = torch.full((2, 64), 0.5)
    >>> out = torch.zeros_like(q)
    >>> kernel.apply(q, out, 1.0)
    >>> bool(torch.allclose(out[0], out[1]))
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cseg_monai.postprocessing.crf.blur import _blur_axis, _blur_grid, _cell_steps
from cseg_monai.postprocessing.crf.sparse_slice import _csr, _SparseSliceKernel, _stable_order


class _GridKernel(_SparseSliceKernel):
    """One normalised Gaussian kernel over position and intensity as a bilateral grid.

    Voxels are splatted to the nearest spatial cell (integer step ``s`` voxels per axis, about
    half the sigma) and linearly along each intensity channel (step one intensity sigma) into
    ``K = 2^channels`` corner cells; the grid is blurred so that splat + blur + slice has the
    kernel's variance; slicing uses the splat's weights, so the filter is a symmetric matrix
    ``N S^T B S N`` (``N`` the symmetric normalisation). Both ``S^T`` (voxels x cells, for the
    slice) and ``S`` (cells x voxels, for the splat) are sparse CSR matrices with 32-bit indices and ``N``
    folded into the values, so the slice and the splat are sparse matrix-vector products
    over contiguous label rows (MKL on a CPU, cuSPARSE on a GPU); on a CPU the splat is about
    twice as fast as a scatter (``index_add_``).
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        sigma_vox: Sequence[float],
        intensity: torch.Tensor,
        sigma_intensity: Sequence[float],
    ) -> None:
        device = intensity.device
        steps, cells, self.blur_sigmas = _cell_steps(shape, sigma_vox)
        self.grid_shape = list(cells)
        lowers, fractions = [], []
        for c in range(intensity.shape[0]):
            f = intensity[c].reshape(-1).float() / float(sigma_intensity[c])
            f -= f.min()
            lower = torch.floor(f)
            self.grid_shape.append(int(lower.max().item()) + 2)  # the upper bin of the largest value exists
            fractions.append(f.sub_(lower))
            lowers.append(lower)
            self.blur_sigmas.append(math.sqrt(2.0 / 3.0))  # 1 - 2 * (linear splat variance 1/6)
        n_ch, n = len(fractions), math.prod(shape)
        n_k = 1 << n_ch
        self.n, self.n_cells = n, math.prod(self.grid_shape)
        itype = torch.int32 if max(self.n_cells, n * n_k) < 2**31 - 1 else torch.int64
        # lowest corner cell of every voxel (C order over the grid axes)
        axes = [(torch.arange(m, device=device, dtype=itype) // st) for m, st in zip(shape, steps)]
        base = ((axes[0][:, None, None] * cells[1] + axes[1][None, :, None]) * cells[2] + axes[2][None, None, :]).reshape(-1)
        for c in range(n_ch):
            base = base * self.grid_shape[len(cells) + c] + lowers[c].to(itype)
        del lowers, axes
        strides = [math.prod(self.grid_shape[len(cells) + c + 1 :]) for c in range(n_ch)]
        corners = sorted(range(n_k), key=lambda m: sum(strides[c] for c in range(n_ch) if m >> c & 1))
        offsets = [sum(strides[c] for c in range(n_ch) if m >> c & 1) for m in corners]
        weights = []  # per corner (ascending offset), the voxels' linear weights
        for m in corners:
            w = torch.ones(n, device=device)
            for c in range(n_ch):
                w.mul_(fractions[c] if m >> c & 1 else 1.0 - fractions[c])
            weights.append(w)
        del fractions
        # the normalisation N = diag(K 1)^-1/2 with K = S^T B S, from S 1 by bincounts (no transpose needed)
        n_cells = self.n_cells
        ones_grid = torch.zeros(n_cells, device=device)
        for off, w in zip(offsets, weights):
            ones_grid[off:] += torch.bincount(base, weights=w, minlength=n_cells)[: n_cells - off]
        crow = torch.arange(0, n * n_k + 1, n_k, dtype=itype, device=device)
        col = torch.stack([base + off for off in offsets], 1).reshape(-1)
        val = torch.stack(weights, 1).reshape(-1)
        ones_grid = _blur_grid(ones_grid.view(1, *self.grid_shape), self.blur_sigmas).reshape(-1)
        norm = torch.rsqrt(torch.mv(_csr(crow, col, val, (n, n_cells)), ones_grid).clamp_min_(1e-20))
        del ones_grid
        val.view(n, n_k).mul_(norm[:, None])
        self.slice_matrix = _csr(crow, col, val, (n, n_cells))
        # splat = the transpose, from one stable sort of the voxels by their lowest corner: row r
        # holds, corner by corner, the voxels whose corner k is r (lowest corner r - offset_k),
        # each corner's voxels of a row a contiguous run in the sorted order
        order = _stable_order(base, n_cells)
        counts = torch.bincount(base, minlength=n_cells)
        del base
        row_len = torch.zeros(n_cells, dtype=counts.dtype, device=device)
        for off in offsets:
            row_len[off:] += counts[: n_cells - off]
        t_crow = torch.zeros(n_cells + 1, dtype=torch.int64, device=device)
        torch.cumsum(row_len, 0, out=t_crow[1:])
        group_start = torch.cumsum(counts, 0).sub_(counts)  # first sorted position of each lowest corner
        before = torch.zeros(n_cells, dtype=counts.dtype, device=device)  # a row's entries of earlier corners
        t_col = torch.empty(n * n_k, dtype=itype, device=device)
        t_val = torch.empty(n * n_k, device=device)
        order = order.to(itype)
        sorted_position = torch.arange(n, device=device, dtype=itype)
        for off, w in zip(offsets, weights):
            start = torch.zeros(n_cells, dtype=itype, device=device)  # where group c's run starts in row c + off
            start[: n_cells - off] = t_crow[off:n_cells] + before[off:] - group_start[: n_cells - off]
            pos = torch.repeat_interleave(start, counts, output_size=n).add_(sorted_position)
            t_col[pos] = order
            t_val[pos] = w.mul_(norm)[order]
            before[off:] += counts[: n_cells - off]
            del pos, start
        del order, counts, group_start, row_len, before, weights, norm, sorted_position
        self.splat_matrix = _csr(t_crow.to(itype), t_col, t_val, (n_cells, n))
        ones = torch.mv(self.splat_matrix, torch.ones(n, device=device)).view(1, *self.grid_shape)
        self.grid_of_ones = _blur_grid(ones, self.blur_sigmas)  # B S N 1, for labels that sum to one

    def splat(self, q: torch.Tensor, sums_to_one: bool = False) -> list[torch.Tensor]:
        """The blurred grids ``B S N q`` of ``q`` (labels, voxels), one row per label.

        Label-major rows: every label is one sparse matrix-vector product over a contiguous
        row. With ``sums_to_one`` (``q`` sums to 1 over the labels) the last label's grid is
        ``B S N 1`` minus the others': one label less is splatted and blurred.
        """
        n_val = q.shape[0]
        m = n_val - 1 if sums_to_one and n_val > 1 else n_val
        g = torch.empty(m, self.n_cells, device=q.device, dtype=torch.float32)
        for label in range(m):
            torch.mv(self.splat_matrix, q[label], out=g[label])
        g = g.view(m, *self.grid_shape)
        for axis, sigma in enumerate(self.blur_sigmas):  # rebinding frees each input: two grids alive at most
            g = _blur_axis(g, axis + 1, sigma)
        rows = list(g.reshape(m, self.n_cells))
        if m < n_val:
            rows.append((self.grid_of_ones - g.sum(0, keepdim=True)).reshape(-1))
        return rows
