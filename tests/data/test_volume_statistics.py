"""Exact out-of-core percentiles: equal to numpy.percentile, also when narrowing needs many passes."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch
from monai.transforms import ScaleIntensityRangePercentiles

from cseg_monai.data.volume_statistics import exact_percentiles, kth_smallest

Q = (0.0, 1.0, 37.5, 99.8, 100.0)


@pytest.mark.parametrize("kind", ["float", "uint8", "uint16_zoomed", "mostly_zero", "tiny_range"])
def test_equals_numpy_percentile(kind):
    rng = np.random.default_rng(3)
    x = {
        "float": rng.normal(0, 1, (16, 40, 40)),
        "uint8": rng.integers(0, 256, (16, 40, 40)).astype(np.uint8),
        "uint16_zoomed": (rng.integers(0, 4096, (16, 40, 40)) * 0.37).astype(np.float32),
        "mostly_zero": np.where(rng.random((16, 40, 40)) < 0.97, 0.0, rng.random((16, 40, 40))).astype(np.float32),
        "tiny_range": (1.0 + rng.random((16, 40, 40)) * 1e-6).astype(np.float64),
    }[kind]
    dx = da.from_array(x, chunks=(4, 20, 40))
    for bins, gather in ((4096, 1 << 22), (4, 30)):  # 4 bins and tiny gathers force many narrowing passes
        assert np.array_equal(exact_percentiles(dx, Q, bins=bins, max_gather=gather), np.percentile(x.astype(np.float64), Q)), (kind, bins)


def test_matches_monai_percentile_scaling_and_checks_input():
    x = np.random.default_rng(1).gamma(2.0, 100.0, (8, 32, 32)).astype(np.float32)
    lo, hi = exact_percentiles(da.from_array(x, chunks=(2, 32, 32)), (1.0, 99.8), bins=16, max_gather=100)
    ref = ScaleIntensityRangePercentiles(1.0, 99.8, 0.0, 1.0, clip=True)(torch.from_numpy(x)).numpy()
    assert np.allclose(np.clip((x - lo) / (hi - lo), 0, 1), ref, atol=1e-6)
    assert kth_smallest(da.from_array(x), [0, x.size - 1]).tolist() == [x.min(), x.max()]
    with pytest.raises(ValueError, match="scan.tif: contains NaN"):
        exact_percentiles(da.from_array(np.array([1.0, np.nan])), (50,), name="scan.tif")
    with pytest.raises(ValueError, match="percentiles"):
        exact_percentiles(da.from_array(x), (101,))
    with pytest.raises(ValueError, match="ranks"):
        kth_smallest(da.from_array(x), [x.size])
