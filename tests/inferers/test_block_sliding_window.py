"""Block-wise sliding windows give what MONAI's whole-volume sliding window gives, whatever the blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer

from cseg_monai.common.tiling import iter_blocks
from cseg_monai.inferers import DihedralTTAInferer, FlipTransposeTTAInferer
from cseg_monai.inferers.block_sliding_window import BlockSlidingWindow, read_box, window_starts


def _net(dims: int) -> torch.nn.Module:
    conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    torch.manual_seed(0)
    return torch.nn.Sequential(conv(1, 4, 3, padding=1), torch.nn.ReLU(), conv(4, 2, 3, padding=1)).eval()


def _blockwise(volume: torch.Tensor, sw: BlockSlidingWindow, block, net) -> torch.Tensor:
    out = None
    for b in iter_blocks(tuple(volume.shape), block, halo=0):
        box = sw.input_box(b.core)
        part = sw(read_box(volume.numpy(), box), box, b.core, net)
        if out is None:
            out = torch.full((part.shape[0],) + tuple(volume.shape), float("nan"))
        out[(slice(None),) + b.core_slices] = part
    return out


@pytest.mark.parametrize(
    ("shape", "roi", "overlap", "mode", "n_transforms", "activation", "block"),
    [
        ((70, 90), (32, 32), 0.25, "gaussian", 8, "sigmoid", (23, 40)),  # 2D, all eight symmetries
        ((20, 45), (32, 32), 0.25, "gaussian", 8, "sigmoid", (7, 16)),  # axes shorter than the window: zero padding
        ((10, 50, 41), (16, 24, 20), 0.5, "gaussian", 2, None, (4, 17, 30)),  # 3D, non-square window, a flip
        ((10, 50, 41), (16, 24, 20), 0.25, "constant", 1, "softmax", (10, 50, 41)),  # one block: the whole volume
    ],
)
def test_equals_monai_whole_volume_inference(shape, roi, overlap, mode, n_transforms, activation, block):
    net = _net(len(roi))
    volume = torch.randn(shape)
    inner = SlidingWindowInferer(roi, sw_batch_size=4, overlap=overlap, mode=mode)
    ref = DihedralTTAInferer(inner, n_transforms=n_transforms, activation=activation)(volume[None, None], net)[0]
    sw = BlockSlidingWindow(shape, roi, overlap=overlap, mode=mode, n_transforms=n_transforms, activation=activation, sw_batch_size=3)
    out = _blockwise(volume, sw, block, net)
    assert not torch.isnan(out).any()
    assert torch.allclose(out, ref, atol=1e-5), float((out - ref).abs().max())


@pytest.mark.parametrize(("n_transforms", "reduce"), [(16, "mean"), (8, "mean"), (16, "max")])
def test_the_16_flips_and_transposes_of_the_cleft_bundle(n_transforms, reduce):
    """z flips too: the cleft bundle's FlipTransposeTTAInferer (mean or max of sigmoids), on an anisotropic window."""
    net = _net(3)
    volume = torch.randn(13, 40, 37)
    inner = SlidingWindowInferer((8, 24, 24), sw_batch_size=2, overlap=0.25, mode="gaussian")
    ref = FlipTransposeTTAInferer(inner, n_transforms=n_transforms, activation="sigmoid", reduce=reduce)(volume[None, None], net)[0]
    sw = BlockSlidingWindow(volume.shape, (8, 24, 24), n_transforms=n_transforms, activation="sigmoid", sw_batch_size=2, reduce=reduce)
    out = _blockwise(volume, sw, (5, 16, 20), net)
    assert not torch.isnan(out).any()
    assert torch.allclose(out, ref, atol=1e-5), float((out - ref).abs().max())


def test_a_2d_network_runs_slice_by_slice_on_a_stack():
    net = _net(2)
    volume = torch.randn(5, 50, 61)
    tta = DihedralTTAInferer(SlidingWindowInferer((32, 32), overlap=0.25, mode="gaussian"), n_transforms=4, activation="sigmoid")
    ref = torch.stack([tta(volume[z][None, None], net)[0] for z in range(5)], dim=1)
    sw = BlockSlidingWindow(volume.shape, (32, 32), n_transforms=4, activation="sigmoid", sw_batch_size=8)
    assert sw.slice_axes == 1
    out = _blockwise(volume, sw, (2, 30, 30), net)
    assert torch.allclose(out, ref, atol=1e-5)


def test_the_halo_is_at_most_one_window():
    sw = BlockSlidingWindow((1000, 1000), (64, 64))
    box = sw.input_box(((300, 400), (0, 100)))
    assert box == ((240, 448), (0, 160))  # windows every 48 voxels: 240 is the last start before 300, 384 the last before 400
    assert box[0][0] >= 300 - 63 and box[0][1] <= 400 + 63
    assert window_starts(100, 32, 0.25) == [0, 24, 48, 68] and window_starts(10, 32, 0.5) == [0]


def test_bad_arguments_are_refused_up_front():
    with pytest.raises(ValueError, match="overlap"):
        BlockSlidingWindow((64, 64), (32, 32), overlap=1.0)
    with pytest.raises(ValueError, match="square"):
        BlockSlidingWindow((64, 64), (32, 16), n_transforms=8)
    with pytest.raises(ValueError, match="3D window"):
        BlockSlidingWindow((8, 64, 64), (32, 32), n_transforms=16)
    with pytest.raises(ValueError, match="activation"):
        BlockSlidingWindow((64, 64), (32, 32), activation="relu")
    with pytest.raises(ValueError, match="2 or 3 axes"):
        BlockSlidingWindow((64,), (32,))
    sw = BlockSlidingWindow((64, 64), (32, 32))
    with pytest.raises(ValueError, match="inside the volume"):
        sw.input_box(((0, 70), (0, 10)))
    core = ((0, 10), (0, 10))
    with pytest.raises(ValueError, match="does not cover"):
        sw(np.zeros((10, 10), np.float32), core, core, _net(2))


def test_read_box_fills_outside_the_array():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = read_box(a, ((-1, 2), (2, 6)), fill=-1)
    assert out.dtype == np.float32 and out.tolist() == [[-1, -1, -1, -1], [2, 3, -1, -1], [6, 7, -1, -1]]
    assert (read_box(a, ((5, 7), (0, 2))) == 0).all()


@pytest.mark.parametrize(
    ("shape", "roi", "overlap", "block"),
    [
        ((20, 50, 41), (8, 24, 24), 0.5, (6, 17, 30)),  # the instance bundle's overlap; blocks narrower than a window on z
        ((5, 30, 70), (8, 24, 24), 0.25, (5, 30, 20)),  # z shorter than the window: zero padding, one window start
    ],
)
def test_owned_windows_computed_once_give_the_whole_volume_blend(shape, roi, overlap, block):
    """Each window run by the one block holding its start; spills summed, then divided by the weight sum."""
    net = _net(3)
    volume = torch.randn(shape)
    ref = torch.sigmoid(SlidingWindowInferer(roi, sw_batch_size=4, overlap=overlap, mode="gaussian")(volume[None, None], net))[0]
    sw = BlockSlidingWindow(shape, roi, overlap=overlap, activation="sigmoid", sw_batch_size=3)
    calls = []
    counted = torch.nn.Sequential(net)
    counted.register_forward_hook(lambda _m, inp, _o: calls.append(inp[0].shape[0]))
    num = torch.zeros((2,) + shape)
    cores = [b.core for b in iter_blocks(shape, block, halo=0)]
    for core in cores:
        box = sw.owned_input_box(core)
        if box is None:
            continue
        spill = sw.spill_box(core)
        num[(slice(None),) + tuple(slice(a, b) for a, b in spill)] += sw.accumulate(read_box(volume.numpy(), box), box, core, counted)
    out = torch.full((2,) + shape, float("nan"))
    for core in cores:
        sl = tuple(slice(a, b) for a, b in core)
        out[(slice(None),) + sl] = sw.blend(num[(slice(None),) + sl], core)
    assert torch.allclose(out, ref, atol=1e-5), float((out - ref).abs().max())
    windows = 1
    for n, r in zip(shape, roi):
        windows *= len(window_starts(n, r, overlap))
    assert sum(calls) == windows  # every window once, none twice
    with pytest.raises(ValueError, match="one transform"):
        BlockSlidingWindow(shape, roi, n_transforms=2).owned_input_box(cores[0])
