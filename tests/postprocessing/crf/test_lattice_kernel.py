"""The permutohedral-lattice appearance kernel (``crf.lattice_kernel``), against pydensecrf's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from postprocessing.crf.crf_testing import needs_pydensecrf

from cseg_monai.postprocessing.crf import CRFParams, DenseCRF
from cseg_monai.postprocessing.crf.lattice_kernel import _lattice_features, _LatticeKernel


def test_lattice_kernel_is_a_gaussian_in_position_and_intensity():
    """A delta filtered on a flat image spreads with about the kernel's sigma and stays centred;
    across an intensity step of many intensity sigmas almost nothing passes."""
    shape, sigma = (1, 61, 61), 4.0
    flat = torch.zeros((1,) + shape)
    kernel = _LatticeKernel(_lattice_features(shape, (1.0, sigma, sigma), flat, (10.0,), position_axes=(1, 2)))
    delta = torch.zeros(1, 61 * 61)
    delta[0, 30 * 61 + 30] = 1.0
    out = torch.zeros_like(delta)
    kernel.apply(delta, out, 1.0, accumulate=False)
    response = out.view(61, 61).double()
    yy, xx = torch.meshgrid(torch.arange(61.0), torch.arange(61.0), indexing="ij")
    mass = response.sum()
    cy, cx = (response * yy).sum() / mass, (response * xx).sum() / mass
    sy = torch.sqrt((response * (yy - cy) ** 2).sum() / mass)
    sx = torch.sqrt((response * (xx - cx) ** 2).sum() / mass)
    assert abs(cy - 30) < 0.5 and abs(cx - 30) < 0.5
    assert 0.7 * sigma < sy < 1.5 * sigma and 0.7 * sigma < sx < 1.5 * sigma, (float(sy), float(sx))
    # an intensity step of 20 intensity sigmas between the halves: the far half gets (almost) nothing
    step = torch.zeros((1,) + shape)
    step[..., 31:] = 200.0
    kernel = _LatticeKernel(_lattice_features(shape, (1.0, sigma, sigma), step, (10.0,), position_axes=(1, 2)))
    kernel.apply(delta, out, 1.0, accumulate=False)
    response = out.view(61, 61)
    assert response[:, 31:].sum() < 1e-3 * response[:, :31].sum()


@needs_pydensecrf
@pytest.mark.parametrize(
    "shape, channels, spacing",
    [
        ((30, 40), 1, None),
        ((30, 40), 2, None),
        ((6, 30, 40), 1, None),
        ((6, 30, 40), 2, (3.0, 1.0, 1.5)),
        ((1, 40), 1, None),  # axes of one voxel are features too, as in pydensecrf
        ((3, 1, 40), 1, None),
    ],
)
def test_lattice_kernel_is_pydensecrfs_lattice(shape, channels, spacing):
    """Narrow appearance kernels use the permutohedral lattice, built with pydensecrf's float32
    arithmetic and features: the same vertices (ties included: a zero channel, the first plane)
    and marginals equal to float precision after 1 and 3 iterations."""
    rng = np.random.default_rng(11)
    prob = rng.dirichlet(np.ones(4), size=shape)
    prob = np.ascontiguousarray(np.moveaxis(prob, -1, 0), dtype=np.float32)
    image = rng.integers(0, 255, (channels,) + shape).astype(np.float32)
    if channels == 2:
        image[0] = 0  # a constant feature: exact ties between remainders
    image = image[0] if channels == 1 else image
    for iterations in (1, 3):
        params = CRFParams(
            iterations=iterations, smoothness_weight=0.0, appearance_weight=3.0, appearance_sigma=2.5, intensity_sigma=30.0
        )
        native = DenseCRF(params, backend="native", device="cpu")(prob, image, spacing)
        reference = DenseCRF(params, backend="pydensecrf")(prob, image, spacing)
        assert np.abs(native - reference).max() < 1e-4, (iterations, np.abs(native - reference).max())
