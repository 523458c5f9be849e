"""Box-wise resampling equals PyTorch's whole-volume interpolate (the in-memory RescaleToSpacingd)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cseg_monai.common.tiling import iter_blocks
from cseg_monai.transforms.block_resample import resample_box, source_box

SHAPES = [((7, 33, 29), (12, 20, 47)), ((5, 64, 64), (5, 57, 57)), ((9, 40, 41), (4, 91, 13)), ((1, 30, 30), (1, 30, 30))]


def _whole(x: np.ndarray, out_shape, mode: str) -> np.ndarray:
    t = torch.from_numpy(x)[None, None].float()
    if mode == "nearest":
        return F.interpolate(t, size=out_shape, mode="nearest-exact")[0, 0].numpy().astype(x.dtype)
    return F.interpolate(t, size=out_shape, mode="trilinear", align_corners=False)[0, 0].numpy()


@pytest.mark.parametrize("in_shape,out_shape", SHAPES)
def test_blocks_equal_the_whole_volume_interpolate(in_shape, out_shape):
    rng = np.random.default_rng(sum(in_shape))
    image = rng.random(in_shape).astype(np.float32)
    labels = rng.integers(0, 1 << 30, in_shape).astype(np.uint32)  # large ids survive (no float round trip)
    ref_image = _whole(image, out_shape, "linear")
    got_image, got_labels = np.zeros(out_shape, np.float32), np.zeros(out_shape, np.uint32)
    for block in iter_blocks(out_shape, (3, 8, 9), halo=0):
        for mode, source, target in (("linear", image, got_image), ("nearest", labels, got_labels)):
            src = source_box(in_shape, out_shape, block.core, mode)
            part = resample_box(source[tuple(slice(a, b) for a, b in src)], src, in_shape, out_shape, block.core, mode)
            target[block.core_slices] = part
    assert np.abs(got_image - ref_image).max() < 1e-5
    # nearest: the same source voxel everywhere (compared through the ids, not through float32 values)
    index = np.arange(np.prod(in_shape), dtype=np.float64).reshape(in_shape)
    ref_index = _whole(index, out_shape, "nearest").astype(np.int64)
    assert np.array_equal(got_labels, labels.reshape(-1)[ref_index])
    assert got_labels.dtype == np.uint32


def test_channels_ride_along_and_bad_boxes_are_refused():
    x = np.random.default_rng(0).random((2, 6, 10, 10)).astype(np.float32)
    box = ((1, 4), (0, 5), (3, 9))
    src = source_box((6, 10, 10), (9, 15, 15), box)
    part = resample_box(x[(slice(None),) + tuple(slice(a, b) for a, b in src)], src, (6, 10, 10), (9, 15, 15), box)
    whole = F.interpolate(torch.from_numpy(x)[None], size=(9, 15, 15), mode="trilinear", align_corners=False)[0].numpy()
    assert np.allclose(part, whole[:, 1:4, 0:5, 3:9], atol=1e-6)
    with pytest.raises(ValueError, match="does not contain"):
        resample_box(x[:, :1, :1, :1], ((0, 1),) * 3, (6, 10, 10), (9, 15, 15), box)
    with pytest.raises(ValueError, match="inside the output"):
        source_box((6, 10, 10), (9, 15, 15), ((0, 10), (0, 1), (0, 1)))
    with pytest.raises(ValueError, match="mode"):
        source_box((6,), (9,), ((0, 1),), mode="cubic")
    for n_in, n_out in itertools.product((1, 2, 17), (1, 3, 17)):
        assert source_box((n_in,), (n_out,), ((0, n_out),))[0][1] <= n_in
