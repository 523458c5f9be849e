"""The pytorch-3dunet-style UNet3D: layer table, any input size, thin anisotropic stacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cseg_monai.networks import UNet3D


def test_layer_table_of_the_default():
    net = UNet3D(in_channels=1, out_channels=2)  # f_maps 32, 4 levels, GroupNorm(8)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d)]
    assert [(c.in_channels, c.out_channels) for c in convs[:8]] == [
        (1, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256),
    ]  # fmt: skip
    assert [(c.in_channels, c.out_channels) for c in convs[8:]] == [
        (384, 128), (128, 128), (192, 64), (64, 64), (96, 32), (32, 32), (32, 2),
    ]  # fmt: skip
    norms = [m for m in net.modules() if isinstance(m, nn.GroupNorm)]
    assert norms[0].num_groups == 1 and all(n.num_groups == 8 for n in norms[2:])  # 1 input channel: 1 group


@pytest.mark.parametrize(("shape", "pool"), [((1, 2, 16, 24, 20), 2), ((2, 1, 5, 33, 40), (1, 2, 2)), ((1, 1, 3, 17, 17), 2)])
def test_any_size_and_thin_stacks(shape, pool):
    net = UNet3D(in_channels=shape[1], out_channels=3, f_maps=8, levels=3, pool=pool)
    x = torch.randn(shape, requires_grad=True)
    out = net(x)
    assert out.shape == (shape[0], 3) + shape[2:]
    out.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="levels >= 2"):
        UNet3D(levels=1)
    with pytest.raises(ValueError, match="pool must be"):
        UNet3D(pool=(1, 2))
    with pytest.raises(ValueError, match="expects \\(batch, channels, Z, Y, X\\)"):
        UNet3D(f_maps=4, levels=2)(torch.zeros(1, 1, 8, 8))
