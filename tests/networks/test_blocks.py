"""Building blocks of the networks."""

from __future__ import annotations

import torch
from torch import nn

from cseg_monai.networks import (
    BACKBONES,
    CentreCrop,
    ConcatResidual,
    ConvBlock,
    ConvNeXtBlock,
    DropPath,
    LayerNormChannelsFirst,
    LayerScale,
    Residual,
    nominal_patch_size,
)

TINY = {"depths": (1, 1, 1, 1), "dims": (8, 16, 32, 64)}
NETS_32 = [name for name in BACKBONES if nominal_patch_size(name)[0] == 32]
# the module types a dense (fully convolutional) rewrite has to understand
ALLOWED = (
    nn.Conv2d, nn.Conv3d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool2d, nn.AvgPool3d,
    nn.BatchNorm2d, nn.BatchNorm3d, LayerNormChannelsFirst, LayerScale, DropPath,
    nn.LeakyReLU, nn.GELU, nn.Identity, nn.Sequential, ConvBlock, Residual, ConcatResidual, ConvNeXtBlock,
    CentreCrop,
)  # fmt: skip


def test_layer_norm_channels_first_matches_torch_layer_norm() -> None:
    x = torch.randn(2, 6, 3, 4, 5)
    ln = LayerNormChannelsFirst(6)
    with torch.no_grad():
        ln.weight.uniform_()
        ln.bias.uniform_()
    ref = nn.functional.layer_norm(x.movedim(1, -1), (6,), ln.weight, ln.bias, eps=1e-6).movedim(-1, 1)
    assert torch.allclose(ln(x), ref, atol=1e-5)
