"""Grid helpers of the native kernels (``crf.blur``): taps, the separable blur, the grid steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cseg_monai.postprocessing.crf.blur import _blur_axis, _cell_steps, _gaussian_taps


def test_gaussian_taps_are_a_normalised_symmetric_kernel():
    taps = _gaussian_taps(1.5).numpy()
    assert taps.size == 2 * 5 + 1  # radius ceil(3 sigma)
    assert abs(taps.sum() - 1) < 1e-6 and np.allclose(taps, taps[::-1]) and taps.argmax() == 5


@pytest.mark.parametrize("n", [20, 400])  # a banded matrix product on short axes, shifted adds on long ones
def test_blur_axis_is_a_zero_padded_convolution(n):
    rng = np.random.default_rng(0)
    grid = torch.from_numpy(rng.random((2, n, 3)).astype(np.float32))
    taps = _gaussian_taps(2.0).numpy().astype(np.float64)
    r = taps.size // 2
    want = np.stack([np.stack([np.convolve(g[:, c], taps)[r : r + n] for c in range(3)], 1) for g in grid.numpy()])
    got = _blur_axis(grid.clone(), 1, 2.0)
    assert np.abs(got.numpy() - want).max() < 1e-5
    last = _blur_axis(grid.transpose(1, 2).contiguous(), 2, 2.0)  # the last axis: one GEMM
    assert np.abs(last.transpose(1, 2).numpy() - want).max() < 1e-5
    assert _blur_axis(grid, 1, 1e-4) is grid  # no blur below 1e-3 cells


def test_cell_steps_make_up_the_kernel_variance():
    steps, cells, blur = _cell_steps((1, 21, 40), (3.0, 4.0, 10.0))
    assert steps == [1, 2, 5] and cells == [1, 11, 8]
    assert blur[0] == 0.0  # an axis of one voxel is not blurred
    for sigma, s, b in zip((4.0, 10.0), steps[1:], blur[1:]):
        # splat and slice add (s^2 - 1) / 12 voxels^2 each; the blur adds the rest, in cells
        assert abs((b * s) ** 2 + 2 * (s * s - 1) / 12 - sigma**2) < 1e-9
