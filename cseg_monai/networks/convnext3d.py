"""ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s") as a 2D/3D centre-voxel classifier.

The ImageNet ConvNeXt-T architecture with N-D convolutions: a 4x4(x4) stride-4 patchify
stem with LayerNorm, four stages of ConvNeXt blocks (depths 3, 3, 9, 3; widths 96, 192,
384, 768) separated by LayerNorm + 2x2(x2) stride-2 convolutions, a final LayerNorm and, in
place of global pooling + linear layer, a convolution head whose kernel covers what is left.

A ConvNeXt block is ``x + DropPath(LayerScale(pw2(GELU(pw1(LN(dwconv(x)))))))`` with a
7x7(x7) depthwise convolution (padding 3) and the two point-wise linears written as 1x1(x1)
convolutions (so no permutes or reshapes are needed in ``forward``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cseg_monai.networks.blocks import DropPath, LayerNormChannelsFirst, LayerScale, conv_type
from cseg_monai.networks.centre_voxel import CentreVoxelNet, PatchPlanner, _axis

__all__ = ["ConvNeXtBlock", "ConvNeXtCentreVoxelNet"]


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt block: ``x + drop_path(body(x))``.

    ``body`` is ``nn.Sequential(dwconv, norm, pwconv1, act, pwconv2, layer_scale)``: depthwise
    conv (kernel 7, padding 3 along the axes where the plan keeps it), channels-first
    LayerNorm, 1x1 conv to ``4 * dim``, GELU, 1x1 conv back to ``dim``, per-channel scale
    initialised to ``layer_scale_init``.

    Args:
        dim: channels.
        spatial_dims: 2 or 3.
        kernel_size, padding: per-axis depthwise kernel and padding.
        drop_path: stochastic depth probability (identity in eval mode).
        layer_scale_init: initial LayerScale value.

    Example:
        >>> ConvNeXtBlock(8, 3).eval()(torch.rand(1, 8, 4, 4, 4)).shape
        torch.Size([1, 8, 4, 4, 4])
    """

    def __init__(
        self,
        dim: int,
        spatial_dims: int = 3,
        kernel_size: int | Sequence[int] = 7,
        padding: int | Sequence[int] = 3,
        drop_path: float = 0.0,
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.body = nn.Sequential()
        self.body.add_module("dwconv", conv(dim, dim, kernel_size, padding=padding, groups=dim))
        self.body.add_module("norm", LayerNormChannelsFirst(dim))
        self.body.add_module("pwconv1", conv(dim, 4 * dim, 1))
        self.body.add_module("act", nn.GELU())
        self.body.add_module("pwconv2", conv(4 * dim, dim, 1))
        self.body.add_module("layer_scale", LayerScale(dim, layer_scale_init))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.body(x))


class ConvNeXtCentreVoxelNet(CentreVoxelNet):
    """``convnext_tiny_3d``: ConvNeXt-T with 2D or 3D convolutions, centre-voxel head.

    Stem: conv k4 s4 -> LayerNorm. Downsampling: LayerNorm -> conv k2 s2. Stages of
    :class:`ConvNeXtBlock`. Drop path rates rise linearly from 0 to ``drop_path_rate`` over all
    blocks (as in ConvNeXt). Weights: truncated normal (std 0.02), zero biases. The stem and
    downsampling convs are planned as downsampling layers (module rule in
    :mod:`cseg_monai.networks.centre_voxel`); the depthwise convs are padded and always kept.

    Layer table (default depths/dims, nominal patch 32 per axis; the same in 2D and 3D)::

        layer        module                      channels  spatial
        input        -                           1         32
        backbone.0   stem (conv k4 s4, LN)       96        8
        backbone.1   stage 1 (3 blocks)          96        8
        backbone.2   down (LN, conv k2 s2)       192       4
        backbone.3   stage 2 (3 blocks)          192       4
        backbone.4   down                        384       2
        backbone.5   stage 3 (9 blocks)          384       2
        backbone.6   down                        768       1
        backbone.7   stage 4 (3 blocks)          768       1
        backbone.8   LayerNorm                   768       1
        head         Conv k1                     n_classes 1

    Receptive field (theoretical, padded) at 32: 1688 per axis; the output depends on the
    whole patch. Parameters (``n_classes=2``): about 27.8 M in 2D (ConvNeXt-T without its
    1000-class head) and about 31.3 M in 3D (7x7x7 depthwise and 2x2x2 downsampling kernels).

    Args:
        n_classes: output classes.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        patch_size: input patch (default 32 per axis); every axis needs at least 4 voxels.
        depths: blocks per stage (4 stages).
        dims: channels per stage (4 stages).
        drop_path_rate: the last block's stochastic depth probability.
        layer_scale_init: initial LayerScale value.

    Example:
        >>> net = ConvNeXtCentreVoxelNet(2, spatial_dims=3, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
        >>> net.eval()(torch.rand(1, 1, 32, 32, 32)).shape
        torch.Size([1, 2, 1, 1, 1])
    """

    min_extent = 4

    def __init__(
        self,
        n_classes: int,
        spatial_dims: int = 3,
        in_channels: int = 1,
        patch_size: Sequence[int] | None = None,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        drop_path_rate: float = 0.1,
        layer_scale_init: float = 1e-6,
    ) -> None:
        depths, dims = tuple(depths), tuple(dims)
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"depths and dims must have 4 entries (one per stage), got {depths} and {dims}")
        if min(depths) < 0 or min(dims) < 1:
            raise ValueError(f"depths must be >= 0 and dims >= 1, got {depths} and {dims}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        super().__init__(n_classes, spatial_dims, in_channels, patch_size, 32, "convnext_tiny_3d")
        self.depths, self.dims = depths, dims
        self.drop_path_rate = float(drop_path_rate)
        self.layer_scale_init = float(layer_scale_init)
        self._assemble()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def _stage(self, plan: PatchPlanner, dim: int, rates: Sequence[float]) -> nn.Sequential:
        blocks = []
        for rate in rates:
            conv = plan.conv(7, padding=3)
            blocks.append(
                ConvNeXtBlock(
                    dim, self.spatial_dims, conv["kernel_size"], conv["padding"], rate, self.layer_scale_init
                )
            )
        return nn.Sequential(*blocks)

    def build_backbone(self, plan: PatchPlanner) -> tuple[list[nn.Module], int]:
        conv = conv_type(self.spatial_dims)
        total = sum(self.depths)
        rates = [self.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        k = _axis(4, plan.down(4))
        layers: list[nn.Module] = [
            nn.Sequential(conv(self.in_channels, self.dims[0], k, stride=k), LayerNormChannelsFirst(self.dims[0]))
        ]
        start = 0
        for i, (depth, dim) in enumerate(zip(self.depths, self.dims, strict=True)):
            if i > 0:
                k = _axis(2, plan.down(2))
                down = nn.Sequential(LayerNormChannelsFirst(self.dims[i - 1]), conv(self.dims[i - 1], dim, k, stride=k))
                layers.append(down)
            layers.append(self._stage(plan, dim, rates[start : start + depth]))
            start += depth
        layers.append(LayerNormChannelsFirst(self.dims[-1]))
        return layers, self.dims[-1]
