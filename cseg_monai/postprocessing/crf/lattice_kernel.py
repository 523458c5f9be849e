"""The appearance kernel as a permutohedral lattice (pydensecrf's own filter), for narrow kernels.

See :class:`_LatticeKernel` (built from the features of :func:`_lattice_features`): only
occupied lattice vertices exist, so its cost follows the voxels whatever the kernel widths.

Example:
    >>> features = _lattice_features((1, 8, 8), (1.0, 2.0, 2.0), torch.zeros(1, 1, 8, 8), (10.0,), (1, 2))
    >>> tuple(features.shape)  # y, x and one intensity channel, per voxel
    (3, 64)
    >>> kernel = _LatticeKernel(features)
    >>> out = torch.zeros(2, 64)
    >>> kernel.apply(torch.full((2, 64), 0.5), out, 1.0)
    >>> bool(torch.allclose(out[0], out[1]))
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from cseg_monai.postprocessing.crf.sparse_slice import _csr, _SparseSliceKernel, _stable_order


class _LatticeKernel(_SparseSliceKernel):
    """One normalised Gaussian kernel over position and intensity as a permutohedral lattice.

    The lattice of Adams, Baek & Davis (2010) exactly as pydensecrf builds it (same float32
    arithmetic, so the same vertices): every voxel's feature vector (``d`` values, from
    :func:`_lattice_features`: position along the input's axes and the intensity channels,
    each divided by its sigma) is lifted onto the plane ``sum = 0`` of ``d + 1`` dimensions and
    splatted with barycentric weights onto the ``d + 1`` vertices of its enclosing simplex; the
    occupied vertices are blurred with ``[1/2, 1, 1/2]`` along each of the ``d + 1`` lattice
    directions (a missing neighbour counts as zero) and sliced back with the same weights.
    Only occupied vertices exist, so the cost follows the number of voxels whatever the widths:
    the kernel for small sigmas, where a dense bilateral grid (:class:`_GridKernel`) has more
    cells than the volume has voxels. Splat and slice are sparse CSR matrix-vector products
    per label, with the symmetric normalisation ``N`` folded into their values; the blur is
    two index gathers per direction.

    Vertices are found by sorting, not hashing: voxels are grouped by simplex (one sort of
    ``N`` 64-bit codes), the vertices of the distinct simplices are sorted and made unique
    (``d + 1`` per simplex), and a vertex's neighbours are binary searches in that sorted list.
    """

    def __init__(self, features: torch.Tensor) -> None:
        d, n = features.shape
        device = features.device
        dp1 = d + 1
        # pydensecrf's constants: the scale of feature k is (1 / sqrt((k + 1)(k + 2))) times
        # sqrt(2/3)(d + 1) rounded to float32, and it multiplies by a float32 1 / (d + 1)
        inv_std = float(np.float32(math.sqrt(2.0 / 3.0) * dp1))
        down = float(np.float32(1.0 / dp1))
        cf = (
            features.float()
            * torch.tensor([1.0 / math.sqrt((k + 2) * (k + 1)) * inv_std for k in range(d)], device=device)[:, None]
        )
        # elevated e_j = sum_{k >= j} cf_k - j cf_{j-1}, e_0 = sum_k cf_k, summed in float32 from
        # the last feature down as pydensecrf does: ties between remainders decide vertices
        elevated = torch.empty((dp1, n), device=device)
        running = torch.zeros(n, device=device)
        for j in range(d, 0, -1):
            torch.sub(running, j * cf[j - 1], out=elevated[j])
            running += cf[j - 1]
        elevated[0] = running
        del cf, running
        # nearest remainder-0 point (halves to even, as SSE rounding), the rank of every
        # coordinate's remainder (ties: the lower index ranks first), then back onto the plane
        rem0 = torch.round(elevated * down)
        excess = rem0.sum(0).to(torch.int8)
        rem0 *= dp1
        diff = elevated - rem0
        rank = torch.zeros((dp1, n), dtype=torch.int8, device=device)
        for i in range(dp1):
            for j in range(i + 1, dp1):
                ahead = torch.lt(diff[i], diff[j])
                rank[i] += ahead
                rank[j] += ahead.logical_not_()
        del ahead
        rank += excess
        del excess
        wrap = (rank < 0).to(torch.int8) - (rank > d).to(torch.int8)
        rank += dp1 * wrap
        rem0 += dp1 * wrap
        del wrap
        # barycentric weights: with v_k the scaled remainder of the coordinate of rank k,
        # b_0 = 1 + v_d - v_0 and b_p = v_{d-p} - v_{d-p+1}
        torch.sub(elevated, rem0, out=diff).mul_(down)
        del elevated
        by_rank = torch.empty_like(diff).scatter_(0, rank.long(), diff)
        del diff
        bary = torch.empty((n, dp1), device=device)  # voxel-major: the slice matrix's values
        torch.sub(by_rank[d], by_rank[0], out=bary[:, 0]).add_(1.0)
        for p in range(1, dp1):
            torch.sub(by_rank[d - p], by_rank[d - p + 1], out=bary[:, p])
        del by_rank
        # keys (the first d coordinates; they sum to 0) as mixed-radix int64 codes, with a margin
        # of d + 1 per digit so that a neighbour's code is the code plus a constant
        rem0 = rem0[:d].to(torch.int64)
        lo = rem0.amin(1) - 2 * dp1
        radix = [int(r) for r in (rem0.amax(1) - lo + 2 * dp1 + 1)]
        if math.prod(radix) * dp1**d >= 1 << 62:
            raise OverflowError("permutohedral simplex codes do not fit in 63 bits")
        strides = [math.prod(radix[i + 1 :]) for i in range(d)]
        total = sum(strides)
        # group the voxels by simplex (nearest point and ranks): code = key digits, then ranks
        code = torch.zeros(n, dtype=torch.int64, device=device)
        for i in range(d):
            code.add_(rem0[i] - lo[i], alpha=strides[i])
        code *= dp1**d
        for i in range(d):
            code.add_(rank[i], alpha=dp1**i)
        del rem0, rank
        order = _stable_order(code, math.prod(radix) * dp1**d)  # voxels grouped by simplex
        sorted_code = code[order]
        del code
        first = torch.ones(n, dtype=torch.bool, device=device)
        torch.ne(sorted_code[1:], sorted_code[:-1], out=first[1:])
        starts = first.nonzero().squeeze(1)  # where each simplex's run starts in ``order``
        counts = torch.diff(starts, append=torch.tensor([n], device=device))
        simplex_code = sorted_code[starts]
        n_simplex = int(starts.numel())
        simplex_of_voxel = torch.empty(n, dtype=torch.int64, device=device)
        simplex_of_voxel[order] = torch.cumsum(first, 0).sub_(1)
        del first, sorted_code
        # each simplex's vertex r: key_i = rem0_i + r - (d + 1) [rank_i > d - r]
        s_rank = torch.remainder(simplex_code, dp1**d)
        s_code = torch.sub(simplex_code, s_rank).div_(dp1**d, rounding_mode="floor")
        del simplex_code
        digits = [torch.remainder(torch.div(s_rank, dp1**i, rounding_mode="floor"), dp1) for i in range(d)]
        del s_rank
        vcodes = torch.empty((dp1, n_simplex), dtype=torch.int64, device=device)
        for r in range(dp1):
            torch.add(s_code, r * total, out=vcodes[r])
            for i in range(d):
                vcodes[r].sub_((digits[i] > d - r).to(torch.int64), alpha=dp1 * strides[i])
        del s_code, digits
        vorder = _stable_order(vcodes.view(-1), math.prod(radix))  # pair e = r * n_simplex + simplex
        sorted_v = vcodes.view(-1)[vorder]
        del vcodes
        new = torch.ones(sorted_v.numel(), dtype=torch.bool, device=device)
        torch.ne(sorted_v[1:], sorted_v[:-1], out=new[1:])
        self.unique = sorted_v[new]  # the vertices' codes, ascending
        m = int(self.unique.numel())
        del sorted_v
        itype = torch.int32 if max(m, n * dp1) < 2**31 - 1 else torch.int64
        vertex_sorted = torch.cumsum(new, 0).sub_(1)
        del new
        pair_vertex = torch.empty(dp1 * n_simplex, dtype=itype, device=device)
        pair_vertex[vorder] = vertex_sorted.to(itype)
        # the slice matrix S^T (voxels x vertices): voxel i's row holds its simplex's d + 1 vertices
        col_s = pair_vertex.view(dp1, n_simplex).t().contiguous()[simplex_of_voxel].view(-1)
        del simplex_of_voxel, pair_vertex
        crow_s = torch.arange(0, n * dp1 + 1, dp1, dtype=itype, device=device)
        val_s = bary.view(-1)
        # the splat matrix S (vertices x voxels): the (simplex, r) pairs sorted by vertex, each
        # contributing its simplex's run of voxels in ``order`` with weight b_r
        pair_r = torch.div(vorder, n_simplex, rounding_mode="floor")
        pair_s = vorder - pair_r * n_simplex
        del vorder
        run_len = counts[pair_s]
        t_crow = torch.zeros(m + 1, dtype=torch.int64, device=device)
        t_crow[1:].index_add_(0, vertex_sorted, run_len)
        t_crow.cumsum_(0)
        del vertex_sorted
        shift = starts[pair_s].sub_(torch.cumsum(run_len, 0).sub_(run_len))  # run start in ``order`` - start in the row
        del starts, counts, pair_s
        pos = torch.repeat_interleave(shift, run_len, output_size=n * dp1).add_(torch.arange(n * dp1, device=device))
        del shift
        t_col = order[pos]
        del pos, order
        # value b_r of voxel c: bary is (voxels, d + 1), so entry c * (d + 1) + r
        t_val = val_s[torch.repeat_interleave(pair_r, run_len, output_size=n * dp1).add_(t_col, alpha=dp1)]
        del pair_r, run_len
        t_col = t_col.to(itype)
        t_crow = t_crow.to(itype)
        # blur along direction j: +d on key coordinate j and -1 on the others (j = d: -1 on all),
        # as index pairs (n1, n2) into the values extended by one zero (index m: a missing
        # neighbour); n2(v) = u where n1(u) = v
        self.m = m
        self.neighbours = []
        for j in range(dp1):
            query = self.unique + ((dp1 * strides[j] if j < d else 0) - total)
            at = torch.searchsorted(self.unique, query).clamp_(max=m - 1)
            found = torch.eq(self.unique[at], query)
            del query
            n1 = torch.where(found, at, m)
            n2 = torch.full((m + 1,), m, dtype=torch.int64, device=device)
            n2.scatter_(0, n1, torch.arange(m, device=device))  # the not-found all land on the spare slot m
            self.neighbours.append((n1.to(itype), n2[:m].to(itype)))
            del at, found, n1, n2
        del self.unique
        # the normalisation N = diag(K 1)^-1/2, from the unnormalised filter of ones
        ones = torch.ones(n, device=device)
        norm = torch.mv(_csr(crow_s, col_s, val_s, (n, m)), self._blur(torch.mv(_csr(t_crow, t_col, t_val, (m, n)), ones)))
        norm.clamp_min_(1e-20).rsqrt_()
        bary.mul_(norm[:, None])
        t_val.mul_(norm[t_col])
        del norm
        self.slice_matrix = _csr(crow_s, col_s, val_s, (n, m))
        self.splat_matrix = _csr(t_crow, t_col, t_val, (m, n))
        self.grid_of_ones = self._blur(torch.mv(self.splat_matrix, ones))  # B S N 1, for labels that sum to one

    def _blur(self, g: torch.Tensor) -> torch.Tensor:
        """``g`` (m vertex values) blurred along the d + 1 directions: ``g + (g[n1] + g[n2]) / 2`` each."""
        m = self.m
        a = torch.empty(m + 1, device=g.device)
        a[:m] = g
        a[m] = 0.0
        b = torch.empty_like(a)
        b[m] = 0.0
        t1 = torch.empty(m, device=g.device)
        t2 = torch.empty(m, device=g.device)
        for n1, n2 in self.neighbours:
            torch.index_select(a, 0, n1, out=t1)
            torch.index_select(a, 0, n2, out=t2)
            t1.add_(t2)
            torch.add(a[:m], t1, alpha=0.5, out=b[:m])
            a, b = b, a
        return a[:m]

    def splat(self, q: torch.Tensor, sums_to_one: bool = False) -> list[torch.Tensor]:
        """The blurred lattice values ``B S N q`` of ``q`` (labels, voxels), one per label.

        With ``sums_to_one`` (``q`` sums to 1 over the labels) the last label's values are
        ``B S N 1`` minus the others': one label less is splatted and blurred.
        """
        n_val = q.shape[0]
        m = n_val - 1 if sums_to_one and n_val > 1 else n_val
        rows = [self._blur(torch.mv(self.splat_matrix, q[label])) for label in range(m)]
        if m < n_val:
            last = self.grid_of_ones.clone()
            for row in rows:
                last -= row
            rows.append(last)
        return rows


def _lattice_features(
    shape: tuple[int, int, int],
    sigma_vox: Sequence[float],
    intensity: torch.Tensor,
    sigma_intensity: Sequence[float],
    position_axes: Sequence[int] = (0, 1, 2),
) -> torch.Tensor:
    """(features, voxels): position / sigma along ``position_axes``, then intensity / sigma per channel.

    ``position_axes`` are the input's own axes, as pydensecrf sees them: ``(1, 2)`` for a 2D
    input (its added z axis is no feature), all three for a 3D one, even of one plane.
    """
    device = intensity.device
    axes = list(position_axes)
    n = math.prod(shape)
    feats = torch.empty((len(axes) + intensity.shape[0], n), device=device)
    for k, a in enumerate(axes):
        pos = torch.arange(shape[a], device=device, dtype=torch.float32) / float(sigma_vox[a])
        view = [1, 1, 1]
        view[a] = shape[a]
        feats[k].view(shape).copy_(pos.view(view).expand(shape))
    for c in range(intensity.shape[0]):
        torch.div(intensity[c].reshape(-1).float(), float(sigma_intensity[c]), out=feats[len(axes) + c])
    return feats
