"""Fully connected CRF (Krähenbühl & Koltun 2011) over 2D and 3D volumes, by mean-field inference.

The model, for voxels ``i`` with class probabilities ``p_i`` from a per-voxel classifier::

    E(x) = sum_i -log p_i(x_i)
         + sum_{i<j} mu(x_i, x_j) * [ w_s * k_s(i, j) + w_a * k_a(i, j) ]
    k_s(i, j) = exp(-|(pos_i - pos_j) / sigma_s|^2 / 2)                         smoothness
    k_a(i, j) = exp(-|(pos_i - pos_j) / sigma_a|^2 / 2 - |(I_i - I_j) / sigma_i|^2 / 2)  appearance

Positions are in physical units (``spacing`` per axis, e.g. nanometres; ssTEM sections are
about 10x thicker than pixels), so ``sigma_s`` and ``sigma_a`` are lengths in those units;
``sigma_i`` is in the image's intensity units (one value per channel). ``mu`` is the label
compatibility: Potts (``1 - identity``: any two different labels cost 1) or a full symmetric
matrix, e.g. the organelle preset that makes impossible neighbours expensive.
Each kernel is normalised symmetrically (``D^-1/2 K D^-1/2`` with ``D = diag(K 1)``), as in
pydensecrf's ``NORMALIZE_SYMMETRIC``, so a weight means "this much cost when all neighbours
disagree" whatever the kernel widths.

Two backends with one interface (:class:`DenseCRF`):

* ``"native"``: PyTorch only, CPU or GPU. The smoothness kernel is a regular grid: voxels
  are summed over cells of about half the spatial sigma, the grid is blurred by a separable
  Gaussian whose width makes up the rest of the kernel's variance, and each cell's value is
  repeated back over its voxels. The appearance kernel is a bilateral grid while that grid
  is small (nearest spatial cell, linear interpolation along each intensity channel with a
  step of one intensity sigma; splat and slice are sparse CSR matrix-vector products, MKL on
  a CPU, cuSPARSE on a GPU); for narrow kernels, whose dense grid would have more than
  ``_GRID_CELLS_PER_VOXEL`` cells per voxel, it is a permutohedral lattice built with
  pydensecrf's own arithmetic (the same vertices, so the same filter to float precision),
  whose cost follows the voxels whatever the widths. Every filter slices with its splat's
  weights. Large volumes run block by block with a halo (``block_voxels``, ``halo``), so
  memory stays bounded by the block size.
* ``"pydensecrf"``: the permutohedral-lattice C++ implementation from the ``pydensecrf2``
  package (``bash scripts/setup.sh crf``), single-threaded, whole volume at once.

Modules, lowest first: :mod:`.params` (:class:`CRFParams`, compatibilities, input checks),
:mod:`.blur` and :mod:`.sparse_slice` (shared grid and sparse-matrix helpers), the three
kernels :mod:`.pool_kernel` (smoothness), :mod:`.grid_kernel` and :mod:`.lattice_kernel`
(appearance), :mod:`.kernels` (which kernel a model needs), :mod:`.mean_field` (inference on
one block), :mod:`.pydensecrf_backend`, :mod:`.dense_crf` (the public :class:`DenseCRF`, blocks)
and :mod:`.fitting` (random search of the parameters; imported on its own, as it needs the
metrics).

Example:
    >>> import numpy as np
    >>> from cseg_monai.postprocessing.crf import CRFParams, DenseCRF
    >>> prob = np.full((2, 4, 4), 0.5, np.float32); prob[:, :, :2] = [[[0.8]], [[0.2]]]
    >>> DenseCRF(CRFParams(iterations=2), device="cpu").labels(prob, np.zeros((4, 4))).shape
    (4, 4)
"""

from __future__ import annotations

from cseg_monai.common.constants import ORGANELLE_CLASSES  # the organelle preset's class order, kept importable here
from cseg_monai.postprocessing.crf.dense_crf import DenseCRF, mean_field_energy
from cseg_monai.postprocessing.crf.params import (
    BACKENDS,
    CRFParams,
    check_crf_inputs,
    compatibility_matrix,
    organelle_compatibility,
)
from cseg_monai.postprocessing.crf.pydensecrf_backend import have_pydensecrf

__all__ = [
    "BACKENDS",
    "CRFParams",
    "DenseCRF",
    "ORGANELLE_CLASSES",
    "check_crf_inputs",
    "compatibility_matrix",
    "have_pydensecrf",
    "mean_field_energy",
    "organelle_compatibility",
]
