"""A 3D U-Net in the style of pytorch-3dunet (Wolny et al. 2020, PlantSeg), for boundary prediction.

Layer table (``f_maps=32``, ``levels=4``, ``in_channels=1``, ``out_channels=2``)::

    level  encoder                                    channels   decoder
    0      DoubleConv(1 -> 16 -> 32)                    32       concat(up(64), 32) -> DoubleConv(96 -> 32 -> 32)
    1      MaxPool(pool) DoubleConv(32 -> 32 -> 64)     64       concat(up(128), 64) -> DoubleConv(192 -> 64 -> 64)
    2      MaxPool(pool) DoubleConv(64 -> 64 -> 128)   128       concat(up(256), 128) -> DoubleConv(384 -> 128 -> 128)
    3      MaxPool(pool) DoubleConv(128 -> 128 -> 256) 256       (bottom)
    head   Conv1x1(32 -> out_channels)  (logits: apply ONE sigmoid in the loss / at inference)

``DoubleConv`` = two [GroupNorm(8) -> Conv3x3 -> ReLU] (pytorch-3dunet's ``gcr`` order; the
first conv of an encoder halves the target channels, as there); up-sampling is
nearest-neighbour interpolation to the skip's size, then concatenation. ``pool`` may be
anisotropic, e.g. ``(1, 2, 2)`` for volumes of few, thick sections (5-plane CTC stacks):
then z is never pooled and any depth works. The net compiles with ``torch.jit.script``.

Example:
    >>> net = UNet3D(in_channels=1, out_channels=2, f_maps=8, levels=3).eval()
    >>> tuple(net(torch.rand(1, 1, 5, 20, 24)).shape)  # any size: up-sampling follows the skips
    (1, 2, 5, 20, 24)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cseg_monai.networks.blocks import format_shape

__all__ = ["UNet3D"]


def _groups(channels: int, groups: int) -> int:
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


class _DoubleConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, encoder: bool, num_groups: int) -> None:
        mid = max(out_ch // 2, in_ch) if encoder else out_ch
        layers: list[nn.Module] = []
        for a, b in ((in_ch, mid), (mid, out_ch)):
            layers += [nn.GroupNorm(_groups(a, num_groups), a), nn.Conv3d(a, b, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class UNet3D(nn.Module):
    """pytorch-3dunet-style 3D U-Net (see the module docstring for the layer table).

    Args:
        in_channels: input channels (1 or 2 stains).
        out_channels: output maps (e.g. 2: boundary and foreground), as logits.
        f_maps: channels of the first level; level ``k`` has ``f_maps * 2**k``.
        levels: number of resolution levels (>= 2).
        num_groups: GroupNorm groups (reduced where a layer has fewer channels).
        pool: max-pooling kernel per level, e.g. ``(1, 2, 2)`` to keep z.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        f_maps: int = 32,
        levels: int = 4,
        num_groups: int = 8,
        pool: int | Sequence[int] = 2,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or f_maps < 1 or levels < 2:
            raise ValueError(
                f"need in/out channels >= 1, f_maps >= 1 and levels >= 2, got {in_channels}, {out_channels}, {f_maps}, {levels}"
            )
        self.pool = (pool,) * 3 if isinstance(pool, int) else tuple(int(p) for p in pool)
        if len(self.pool) != 3 or min(self.pool) < 1:
            raise ValueError(f"pool must be an int or 3 ints >= 1, got {pool!r}")
        widths = [f_maps * 2**k for k in range(levels)]
        self.encoders = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.encoders.append(_DoubleConv(prev, w, encoder=True, num_groups=num_groups))
            prev = w
        self.decoders = nn.ModuleList(
            _DoubleConv(widths[k] + widths[k + 1], widths[k], encoder=False, num_groups=num_groups)
            for k in reversed(range(levels - 1))
        )
        self.head = nn.Conv3d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"UNet3D expects (batch, channels, Z, Y, X), got shape {format_shape(x.shape)}")
        skips = []
        for k, enc in enumerate(self.encoders):
            if k:
                kernel: list[int] = []  # never pool a size-1 axis away
                for axis, p in enumerate(self.pool):  # (a loop, not zip: TorchScript-compatible)
                    kernel.append(p if x.shape[axis + 2] >= p else 1)
                x = F.max_pool3d(x, kernel, ceil_mode=True)
            x = enc(x)
            skips.append(x)
        x = skips.pop()
        for dec in self.decoders:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = dec(torch.cat([skip, x], dim=1))
        return self.head(x)
