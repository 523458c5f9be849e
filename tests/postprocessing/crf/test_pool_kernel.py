"""The pooled smoothness kernel (``crf.pool_kernel``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from postprocessing.crf.crf_testing import check_against_dense, dense_kernel

from cseg_monai.postprocessing.crf.pool_kernel import _PoolKernel


@pytest.mark.parametrize("shape", [(5, 7, 9), (1, 11, 6), (8, 8, 8)])
def test_pool_kernel_equals_its_dense_definition(shape):
    """The pooled smoothness kernel is exactly ``N S^T B S N`` (partial cells too)."""
    rng = np.random.default_rng(3)
    n = int(np.prod(shape))
    q = rng.dirichlet(np.ones(4), size=n).T.astype(np.float32)  # (labels, voxels), sums to one
    sigma = (2.6, 3.0, 4.2)
    check_against_dense(_PoolKernel(shape, sigma, torch.device("cpu")), dense_kernel(shape, sigma), q)
