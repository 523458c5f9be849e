"""The bilateral-grid appearance kernel (``crf.grid_kernel``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from postprocessing.crf.crf_testing import check_against_dense, dense_kernel

from cseg_monai.postprocessing.crf.grid_kernel import _GridKernel


@pytest.mark.parametrize("shape", [(5, 7, 9), (1, 11, 6), (8, 8, 8)])
def test_grid_kernel_equals_its_dense_definition(shape):
    """The sparse bilateral grid, one and two intensity channels, is exactly ``N S^T B S N`` (partial cells too)."""
    rng = np.random.default_rng(3)
    n = int(np.prod(shape))
    q = rng.dirichlet(np.ones(4), size=n).T.astype(np.float32)  # (labels, voxels), sums to one
    image = rng.integers(0, 255, (2,) + shape).astype(np.float32)
    sigma = (2.6, 3.0, 4.2)
    one = _GridKernel(shape, sigma, torch.from_numpy(image[:1]), [40.0])
    check_against_dense(one, dense_kernel(shape, sigma, image[:1], [40.0]), q)
    two = _GridKernel(shape, sigma, torch.from_numpy(image), [60.0, 90.0])
    check_against_dense(two, dense_kernel(shape, sigma, image, [60.0, 90.0]), q)
