"""ConvNeXt-T 3D: the real configuration, drop path and layer scale."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cseg_monai.networks import (
    BACKBONES,
    CentreCrop,
    ConcatResidual,
    ConvBlock,
    ConvNeXtBlock,
    ConvNeXtCentreVoxelNet,
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


def test_convnext_drop_path_and_layer_scale() -> None:
    net = ConvNeXtCentreVoxelNet(2, spatial_dims=2, drop_path_rate=0.3, **TINY)
    rates = [m.drop_path.p for m in net.modules() if isinstance(m, ConvNeXtBlock)]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3) and rates == sorted(rates)
    gammas = [m.gamma for m in net.modules() if isinstance(m, LayerScale)]
    assert len(gammas) == 4 and all(torch.all(g == 1e-6) for g in gammas)
    stem = net.backbone[0][0]
    assert stem.kernel_size == (4, 4) and stem.stride == (4, 4)
