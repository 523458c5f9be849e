"""What the two sparse appearance kernels share: CSR matrices, the sparse slice, a stable integer sort.

The bilateral grid (:mod:`.grid_kernel`) and the permutohedral lattice (:mod:`.lattice_kernel`)
both splat and slice through sparse CSR matrices (:func:`_csr`, :class:`_SparseSliceKernel`)
and build the splat matrix, the transpose of the slice matrix, from one stable sort of the
voxels by cell (:func:`_stable_order`).

Example:
    >>> m = _csr(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.tensor([2.0, 3.0]), (2, 2))
    >>> torch.mv(m, torch.tensor([1.0, 10.0])).tolist()
    [20.0, 3.0]
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def _csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR matrix from its parts (no invariant checks; they hold by construction)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the operations used here are not
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size, check_invariants=False)


class _SparseSliceKernel:
    """What the bilateral grid and the lattice share: slicing through the sparse CSR matrix
    ``self.slice_matrix`` (``N S^T``, voxels x cells) and ``apply`` = ``slice(splat(q))``;
    subclasses build it and define ``splat``."""

    slice_matrix: torch.Tensor

    def splat(self, q: torch.Tensor, sums_to_one: bool = False) -> list[torch.Tensor]:
        """The blurred grid values ``B S N q`` of ``q`` (labels, voxels), one row per label (subclasses)."""
        raise NotImplementedError

    def slice(self, grids: list[torch.Tensor], out: torch.Tensor, weight: float, accumulate: bool = True) -> None:
        """``out (+)= weight * N S^T grids``, a sparse matrix-vector product per label (``out`` may be the splatted ``q``)."""
        for label, row in enumerate(grids):
            if weight != 1.0:  # on the (small) grid rather than on every voxel
                row.mul_(weight)
            if accumulate:
                torch.addmv(out[label], self.slice_matrix, row, out=out[label])
            else:
                torch.mv(self.slice_matrix, row, out=out[label])

    def apply(
        self, q: torch.Tensor, out: torch.Tensor, weight: float, accumulate: bool = True, sums_to_one: bool = False
    ) -> None:
        """``out (+)= weight * N S^T B S N q`` for ``q`` and ``out`` of shape (labels, voxels)."""
        self.slice(self.splat(q, sums_to_one), out, weight, accumulate)


def _stable_order(keys: torch.Tensor, bound: int) -> torch.Tensor:
    """Indices that sort ``keys`` (1D, integers in ``[0, bound)``) stably, as int64.

    On a CPU, where key and position fit together in 63 bits, numpy sorts the packed values
    ``key * 2^b + position`` in place (a vectorised sort of plain integers: about twice as fast
    as an argsort) and the positions are the low ``b`` bits; else an argsort.

    Example:
        >>> _stable_order(torch.tensor([2, 0, 2, 1]), 3).tolist()
        [1, 3, 0, 2]
    """
    n = keys.numel()
    bits = max(1, (n - 1).bit_length())
    if keys.device.type != "cpu":
        return torch.argsort(keys, stable=True)
    if bound > 1 << (63 - bits):
        return torch.from_numpy(np.argsort(keys.numpy(), kind="stable"))
    packed = keys.to(torch.int64, copy=True).bitwise_left_shift_(bits)
    packed.bitwise_or_(torch.arange(n, dtype=torch.int64))
    values = packed.numpy()
    values.sort()
    values &= (1 << bits) - 1
    return packed
