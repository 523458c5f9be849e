"""Which appearance filter a model gets (``crf.kernels``)."""

from __future__ import annotations

import numpy as np
import torch

from cseg_monai.postprocessing.crf import CRFParams
from cseg_monai.postprocessing.crf.grid_kernel import _GridKernel
from cseg_monai.postprocessing.crf.kernels import _appearance_kernel, _kernels
from cseg_monai.postprocessing.crf.lattice_kernel import _LatticeKernel
from cseg_monai.postprocessing.crf.pool_kernel import _PoolKernel


def test_appearance_kernel_is_a_grid_when_wide_and_a_lattice_when_narrow():
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (1, 8, 40, 40)).astype(np.float32))
    assert isinstance(_appearance_kernel((8, 40, 40), (10.0,) * 3, image, (20.0,)), _GridKernel)
    assert isinstance(_appearance_kernel((8, 40, 40), (2.0,) * 3, image, (3.0,)), _LatticeKernel)


def test_kernels_follow_the_weights():
    image = torch.zeros(1, 2, 8, 8)
    both = _kernels((2, 8, 8), (1.0, 1.0, 1.0), CRFParams(smoothness_weight=2.0, appearance_weight=0.5), image)
    assert [(w, type(k)) for w, k in both] == [(2.0, _PoolKernel), (0.5, _GridKernel)]
    assert _kernels((2, 8, 8), (1.0, 1.0, 1.0), CRFParams(smoothness_weight=0.0, appearance_weight=0.0), image) == []
