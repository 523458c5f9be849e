"""Which native kernels a :class:`~cseg_monai.postprocessing.crf.CRFParams` needs, and which filter each uses.

The smoothness kernel is always the pooled grid (:class:`.pool_kernel._PoolKernel`); the
appearance kernel is a dense bilateral grid (:class:`.grid_kernel._GridKernel`) while that grid
has at most ``_GRID_CELLS_PER_VOXEL`` cells per voxel, else a permutohedral lattice
(:class:`.lattice_kernel._LatticeKernel`).

Example:
    >>> image = torch.zeros(1, 4, 16, 16)
    >>> [type(k).__name__ for _, k in _kernels((4, 16, 16), (1.0, 1.0, 1.0), CRFParams(), image)]
    ['_PoolKernel', '_GridKernel']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cseg_monai.postprocessing.crf.blur import _cell_steps
from cseg_monai.postprocessing.crf.grid_kernel import _GridKernel
from cseg_monai.postprocessing.crf.lattice_kernel import _lattice_features, _LatticeKernel
from cseg_monai.postprocessing.crf.params import CRFParams
from cseg_monai.postprocessing.crf.pool_kernel import _PoolKernel

#: Any of the native kernels: ``splat``, ``slice`` and ``apply`` over (labels, voxels).
Kernel = _PoolKernel | _GridKernel | _LatticeKernel

# The appearance kernel is a dense bilateral grid while it has at most this many cells per
# voxel, else a permutohedral lattice (measured crossover on 64x128x128: about 3.4).
_GRID_CELLS_PER_VOXEL = 3.0


def _appearance_kernel(
    shape: tuple[int, int, int],
    sigma_vox: Sequence[float],
    intensity: torch.Tensor,
    sigma_intensity: Sequence[float],
    position_axes: Sequence[int] = (0, 1, 2),
) -> _GridKernel | _LatticeKernel:
    """The dense bilateral grid where it has few cells (wide kernels), else the permutohedral lattice.

    The grid costs in proportion to its cells, the lattice in proportion to the voxels (its
    construction dominates); the crossover measured on the 64x128x128 benchmark problem is
    about 3.4 cells per voxel. The grid also stands in where the lattice's codes would not
    fit in 63 bits (extreme feature ranges).
    """
    _, cells, _ = _cell_steps(shape, sigma_vox)
    n_cells = math.prod(cells)
    for c in range(intensity.shape[0]):
        span = float(intensity[c].max() - intensity[c].min()) / float(sigma_intensity[c])
        n_cells *= int(span) + 2
    if n_cells <= _GRID_CELLS_PER_VOXEL * math.prod(shape):
        return _GridKernel(shape, sigma_vox, intensity, sigma_intensity)
    try:
        return _LatticeKernel(_lattice_features(shape, sigma_vox, intensity, sigma_intensity, position_axes))
    except OverflowError:  # codes of more than 63 bits: extreme feature ranges
        return _GridKernel(shape, sigma_vox, intensity, sigma_intensity)


def _kernels(
    shape3: tuple[int, int, int],
    spacing3: Sequence[float],
    params: CRFParams,
    image: torch.Tensor,
    position_axes: Sequence[int] = (0, 1, 2),
) -> list[tuple[float, Kernel]]:
    """The ``(weight, kernel)`` pairs of the switched-on kernels (weight > 0): smoothness, then appearance.

    Args:
        shape3: the block's ``(Z, Y, X)`` shape.
        spacing3: physical voxel size per axis (units of the sigmas).
        params: the model.
        image: ``(C, Z, Y, X)`` intensities, on the device the kernels are built on.
        position_axes: the input's own spatial axes, for the lattice's features.
    """
    kernels: list[tuple[float, Kernel]] = []
    if params.smoothness_weight > 0:
        sig = [params.smoothness_sigma / sp for sp in spacing3]
        kernels.append((float(params.smoothness_weight), _PoolKernel(shape3, sig, image.device)))
    if params.appearance_weight > 0:
        sig = [params.appearance_sigma / sp for sp in spacing3]
        n_ch = image.shape[0]
        sig_i = params.intensity_sigma
        sig_i = tuple(sig_i) if isinstance(sig_i, tuple) else (float(sig_i),) * n_ch
        if len(sig_i) != n_ch:
            raise ValueError(f"intensity_sigma has {len(sig_i)} values but the image has {n_ch} channels")
        kernels.append((float(params.appearance_weight), _appearance_kernel(shape3, sig, image, sig_i, position_axes)))
    return kernels
