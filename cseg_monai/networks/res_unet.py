"""Residual anisotropic 3D U-Nets for synaptic clefts in serial-section EM (synapse-unet, PyTorch).

Serial-section EM is anisotropic (sections 40-50 nm thick, pixels 4-5 nm), so the first levels
convolve and pool in-plane only and the deep levels, where the in-plane resolution has caught up,
go isotropic. Skips are ADDED to the up-sampled path (not concatenated), as in the residual
symmetric U-Nets of the connectomics line (Lee et al. 2017, "Superhuman accuracy on the SNEMI3D
connectomics challenge"; the synapse-unet cleft detector).

``ResUNet3D`` (``res_unet``), ``filters=(32, 64, 96, 128, 160)``, ``in_channels=1``::

    level    encoder (ResBlock = conv-BN-ReLU -> r; r + conv-BN-ReLU-conv-BN(r) -> ReLU)   pool after
    0        ResBlock(1 -> 32,    1x3x3)                                              (1, 2, 2)
    1        ResBlock(32 -> 64,   1x3x3)                                              (1, 2, 2)
    2        ResBlock(64 -> 96,   1x3x3)                                              (1, 2, 2)
    3        ResBlock(96 -> 128,  3x3x3)                                              (2, 2, 2)
    centre   ResBlock(128 -> 160, 3x3x3)
    up 3     upsample (2, 2, 2) -> Conv1x1(160 -> 128) BN, + skip 3, ReLU, ResBlock(128, 3x3x3)
    up 2     upsample (1, 2, 2) -> Conv1x1(128 -> 96) BN,  + skip 2, ReLU, ResBlock(96, 1x3x3)
    up 1     upsample (1, 2, 2) -> Conv1x1(96 -> 64) BN,   + skip 1, ReLU, ResBlock(64, 1x3x3)
    up 0     upsample (1, 2, 2) -> Conv1x1(64 -> 32) BN,   + skip 0, ReLU, ResBlock(32, 1x3x3)
    head     Conv1x1(32 -> out_channels): the cleft logit (sigmoid in the loss / at inference)

``ResUNetPlus3D`` (``res_unet_plus``), ``filters=(32, 64, 64, 96, 96)``, ELU instead of ReLU: each
anisotropic level is a :class:`DilatedInPlaneBlock`: a 1x3x3 conv-BN-ELU projection ``p``, then four
parallel in-plane branches of chained 1x3x3 conv-BN-ELU with dilations (1), (1, 2), (1, 2, 4) and
(1, 2, 4, 8), summed with ``p`` (ELU after the sum): the receptive field in-plane grows to 31 px
per level at the cost of four branches. The isotropic levels are the ResBlocks above with ELU.

Both pool z once and y, x four times: an input needs an even Z and Y, X multiples of 16
(:func:`check_input_shape` says so, and suggests the nearest valid shape). Up-sampling is
trilinear; the weights start from Kaiming-normal (fan-out) initialisation, BN at (1, 0).

Example:
    >>> net = ResUNet3D(filters=(4, 8, 8, 8, 8)).eval()
    >>> tuple(net(torch.rand(1, 1, 4, 32, 32)).shape)
    (1, 1, 4, 32, 32)
    >>> nearest_valid_shape((31, 204, 204))
    (32, 208, 208)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cseg_monai.networks.blocks import format_shape

__all__ = ["ResUNet3D", "ResUNetPlus3D", "ResBlock3D", "DilatedInPlaneBlock", "check_input_shape", "nearest_valid_shape", "SHAPE_DIVISORS"]

#: what every input axis (Z, Y, X) must be a multiple of: z is pooled once, y and x four times.
SHAPE_DIVISORS: tuple[int, int, int] = (2, 16, 16)
_ANISOTROPIC_LEVELS = 3


def nearest_valid_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """The valid ``(Z, Y, X)`` nearest to ``shape``, each axis rounded to its divisor (ties upwards, never 0).

    Example:
        >>> nearest_valid_shape((31, 204, 204)), nearest_valid_shape((1, 5, 100))
        ((32, 208, 208), (2, 16, 96))
    """
    out = []
    for n, d in zip(shape, SHAPE_DIVISORS):
        down, up = (int(n) // d) * d, -(-int(n) // d) * d
        out.append(max(d, up if up - n <= n - down else down))
    return tuple(out)  # type: ignore[return-value]


def check_input_shape(shape: Sequence[int], name: str = "ResUNet3D") -> tuple[int, int, int]:
    """Check a patch / ROI size ``(Z, Y, X)`` for the residual U-Nets; returns it as ints.

    Raises:
        ValueError: not 3 positive sizes, or not divisible by :data:`SHAPE_DIVISORS` (the message
            gives the nearest valid shape).

    Example:
        >>> check_input_shape([18, 160, 160])
        (18, 160, 160)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{name}: the input shape must be 3 positive sizes (Z, Y, X), got {shape}")
    if any(n % d for n, d in zip(shape, SHAPE_DIVISORS)):
        raise ValueError(
            f"{name}: input shape {shape} does not fit: Z must be even and Y, X multiples of 16 (z is pooled once, "
            f"y and x four times); the nearest valid shape is {nearest_valid_shape(shape)}"
        )
    return shape  # type: ignore[return-value]


def _act(name: str) -> nn.Module:
    return nn.ELU(inplace=True) if name == "elu" else nn.ReLU(inplace=True)


def _conv(cin: int, cout: int, kernel: tuple[int, int, int], dilation: int = 1) -> nn.Conv3d:
    padding = tuple(dilation * (k // 2) if k > 1 else 0 for k in kernel)
    return nn.Conv3d(cin, cout, kernel, padding=padding, dilation=(1, dilation, dilation) if kernel[0] == 1 else dilation, bias=False)


class ResBlock3D(nn.Module):
    """conv-BN-act gives the residual ``r``; then ``act(r + BN(conv(act(BN(conv(r))))))``.

    Args:
        in_channels / out_channels: channels in and out.
        kernel: ``(1, 3, 3)`` in-plane or ``(3, 3, 3)`` isotropic.
        activation: ``"relu"`` or ``"elu"``.

    Example:
        >>> tuple(ResBlock3D(2, 4, (1, 3, 3))(torch.rand(1, 2, 3, 8, 8)).shape)
        (1, 4, 3, 8, 8)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int], activation: str = "relu") -> None:
        super().__init__()
        self.project = nn.Sequential(_conv(in_channels, out_channels, kernel), nn.BatchNorm3d(out_channels), _act(activation))
        self.body = nn.Sequential(
            _conv(out_channels, out_channels, kernel), nn.BatchNorm3d(out_channels), _act(activation),
            _conv(out_channels, out_channels, kernel), nn.BatchNorm3d(out_channels),
        )  # fmt: skip
        self.out = _act(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.project(x)
        return self.out(r + self.body(r))


class DilatedInPlaneBlock(nn.Module):
    """``act(p + b1(p) + b2(p) + b3(p) + b4(p))``: ``p`` a 1x3x3 conv-BN-act projection, branch ``k``
    a chain of 1x3x3 conv-BN-act with in-plane dilations ``(1, 2, 4, 8)[:k]``.

    Example:
        >>> tuple(DilatedInPlaneBlock(1, 4)(torch.rand(1, 1, 2, 40, 40)).shape)
        (1, 4, 2, 40, 40)
    """

    def __init__(self, in_channels: int, out_channels: int, activation: str = "elu", dilations: Sequence[int] = (1, 2, 4, 8)) -> None:
        super().__init__()
        k = (1, 3, 3)
        self.project = nn.Sequential(_conv(in_channels, out_channels, k), nn.BatchNorm3d(out_channels), _act(activation))
        self.branches = nn.ModuleList(
            nn.Sequential(*[m for d in dilations[:n] for m in (_conv(out_channels, out_channels, k, d), nn.BatchNorm3d(out_channels), _act(activation))])
            for n in range(1, len(dilations) + 1)
        )
        self.out = _act(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.project(x)
        total = p
        for branch in self.branches:
            total = total + branch(p)
        return self.out(total)


class _UpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, scale: tuple[int, int, int], kernel: tuple[int, int, int], activation: str) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=tuple(float(s) for s in scale), mode="trilinear", align_corners=False)
        self.reduce = nn.Sequential(nn.Conv3d(in_channels, out_channels, 1, bias=False), nn.BatchNorm3d(out_channels))
        self.act = _act(activation)
        self.block = ResBlock3D(out_channels, out_channels, kernel, activation)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.act(self.reduce(self.up(x)) + skip))


class _ResidualUNet(nn.Module):
    name = "ResUNet3D"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        filters: Sequence[int],
        activation: str,
        plus: bool,
        input_shape: Sequence[int] | None,
    ) -> None:
        super().__init__()
        filters = tuple(int(f) for f in filters)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"{self.name}: in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
        if len(filters) != 5 or min(filters) < 1:
            raise ValueError(f"{self.name}: filters must be 5 channel counts >= 1 (3 anisotropic levels, 1 isotropic, the centre), got {filters}")
        if input_shape is not None:
            check_input_shape(input_shape, self.name)
        self.filters = filters
        self.net_name: str = self.name  # an instance attribute: TorchScript sees it in forward
        aniso, iso = (1, 3, 3), (3, 3, 3)
        self.encoders = nn.ModuleList()
        prev = in_channels
        for level, f in enumerate(filters[:-1]):
            if level < _ANISOTROPIC_LEVELS:
                self.encoders.append(DilatedInPlaneBlock(prev, f, activation) if plus else ResBlock3D(prev, f, aniso, activation))
            else:
                self.encoders.append(ResBlock3D(prev, f, iso, activation))
            prev = f
        self.pools = nn.ModuleList(nn.MaxPool3d((1, 2, 2) if level < _ANISOTROPIC_LEVELS else (2, 2, 2)) for level in range(len(filters) - 1))
        self.centre = ResBlock3D(filters[-2], filters[-1], iso, activation)
        self.decoders = nn.ModuleList(
            _UpBlock(filters[level + 1], filters[level], (1, 2, 2) if level < _ANISOTROPIC_LEVELS else (2, 2, 2),
                     aniso if level < _ANISOTROPIC_LEVELS else iso, activation)  # fmt: skip
            for level in reversed(range(len(filters) - 1))
        )
        self.head = nn.Conv3d(filters[0], out_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[2] % 2 != 0 or x.shape[3] % 16 != 0 or x.shape[4] % 16 != 0:
            raise ValueError(
                self.net_name + " expects (batch, channels, Z, Y, X) with Z even and Y, X multiples of 16, got shape "
                + format_shape(x.shape) + " (crop or pad it, or pick the roi_size check_input_shape accepts)"
            )  # fmt: skip
        skips: list[torch.Tensor] = []
        for encoder, pool in zip(self.encoders, self.pools):
            x = encoder(x)
            skips.append(x)
            x = pool(x)
        x = self.centre(x)
        for k, decoder in enumerate(self.decoders):
            x = decoder(x, skips[len(skips) - 1 - k])
        return self.head(x)


class ResUNet3D(_ResidualUNet):
    """``res_unet``: the residual anisotropic 3D U-Net (layer table in the module docstring).

    Args:
        in_channels: input channels (1: grey EM).
        out_channels: output logits (1: cleft).
        filters: channels of the 3 anisotropic levels, the isotropic level and the centre.
        input_shape: the patch / ROI size ``(Z, Y, X)`` the net will see, checked now (Z even,
            Y and X multiples of 16) so that a bad config fails at construction; ``None``: checked
            at the first forward only.

    Example:
        >>> ResUNet3D(input_shape=(31, 204, 204))
        Traceback (most recent call last):
        ...
        ValueError: ResUNet3D: input shape (31, 204, 204) does not fit: ... the nearest valid shape is (32, 208, 208)
    """

    name = "ResUNet3D"

    def __init__(self, in_channels: int = 1, out_channels: int = 1, filters: Sequence[int] = (32, 64, 96, 128, 160),
                 input_shape: Sequence[int] | None = None) -> None:  # fmt: skip
        super().__init__(in_channels, out_channels, filters, "relu", plus=False, input_shape=input_shape)


class ResUNetPlus3D(_ResidualUNet):
    """``res_unet_plus``: ELU, and dilated in-plane branches in the anisotropic levels (see the module docstring).

    Args: as :class:`ResUNet3D`, with ``filters=(32, 64, 64, 96, 96)``.

    Example:
        >>> net = ResUNetPlus3D(filters=(4, 4, 4, 4, 4)).eval()
        >>> tuple(net(torch.rand(2, 1, 2, 16, 48)).shape)
        (2, 1, 2, 16, 48)
    """

    name = "ResUNetPlus3D"

    def __init__(self, in_channels: int = 1, out_channels: int = 1, filters: Sequence[int] = (32, 64, 64, 96, 96),
                 input_shape: Sequence[int] | None = None) -> None:  # fmt: skip
        super().__init__(in_channels, out_channels, filters, "elu", plus=True, input_shape=input_shape)
