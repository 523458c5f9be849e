"""Building blocks for the centre-voxel classifiers.

Everything here is a plain ``torch.nn`` module with a fixed, inspectable structure, so that
a later dense ("fully convolutional") rewrite can walk the module tree and replace pooling
strides by dilations:

* :class:`ConvBlock` is an ``nn.Sequential`` of ``conv -> norm -> act``;
* :class:`Residual` adds a ``body`` to a ``shortcut`` (identity by default);
* :class:`ConcatResidual` concatenates a ``body`` and a ``shortcut`` along channels;
* :class:`LayerNormChannelsFirst`, :class:`LayerScale` and :class:`DropPath` are per-voxel
  (point-wise) operations and need no rewriting.

No block pools, reshapes or flattens activations inside ``forward``. Every block (and every
net built from them) compiles with ``torch.jit.script``; error messages in ``forward`` format
shapes with :func:`format_shape`, which TorchScript can compile, instead of ``tuple(x.shape)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "ConvBlock",
    "LayerNormChannelsFirst",
    "LayerScale",
    "DropPath",
    "Residual",
    "ConcatResidual",
    "format_shape",
    "conv_type",
    "max_pool_type",
    "avg_pool_type",
    "batch_norm_type",
    "make_norm",
    "make_act",
    "NORMS",
    "ACTS",
]

IntOrSeq = int | Sequence[int]

NORMS = ("batch", "layer", "none")
ACTS = ("leakyrelu", "gelu", "none")


def format_shape(shape: list[int]) -> str:
    """``shape`` written as ``str(tuple(shape))`` does, e.g. ``(1, 2, 3)``; TorchScript-compatible.

    ``forward`` methods use it in error messages: ``tuple(x.shape)`` does not compile with
    ``torch.jit.script``, and ``str(x.shape)`` would read ``torch.Size([...])`` in eager mode.

    Example:
        >>> format_shape(torch.zeros(1, 2, 3).shape), format_shape([5]), format_shape([])
        ('(1, 2, 3)', '(5,)', '()')
    """
    if len(shape) == 1:
        return "(" + str(shape[0]) + ",)"
    return "(" + ", ".join([str(n) for n in shape]) + ")"


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


def conv_type(spatial_dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    _check_dims(spatial_dims)
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def max_pool_type(spatial_dims: int) -> type[nn.MaxPool2d] | type[nn.MaxPool3d]:
    """``nn.MaxPool2d`` or ``nn.MaxPool3d``."""
    _check_dims(spatial_dims)
    return nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d


def avg_pool_type(spatial_dims: int) -> type[nn.AvgPool2d] | type[nn.AvgPool3d]:
    """``nn.AvgPool2d`` or ``nn.AvgPool3d``."""
    _check_dims(spatial_dims)
    return nn.AvgPool2d if spatial_dims == 2 else nn.AvgPool3d


def batch_norm_type(spatial_dims: int) -> type[nn.BatchNorm2d] | type[nn.BatchNorm3d]:
    """``nn.BatchNorm2d`` or ``nn.BatchNorm3d``."""
    _check_dims(spatial_dims)
    return nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d


class LayerNormChannelsFirst(nn.Module):
    """Layer normalisation over the channel axis of a ``(B, C, *spatial)`` tensor.

    Each voxel's channel vector is normalised to zero mean and unit variance, then scaled
    and shifted by learned per-channel ``weight`` and ``bias`` (as ConvNeXt's
    ``LayerNorm(data_format="channels_first")``). It is point-wise in space, so it works for
    any number of spatial axes and is unaffected by a dense (fully convolutional) rewrite.

    Args:
        num_channels: the channel count ``C``.
        eps: added to the variance.

    Example:
        >>> ln = LayerNormChannelsFirst(4)
        >>> y = ln(torch.randn(2, 4, 3, 5, 5))
        >>> y.shape, bool(y.mean(1).abs().max() < 1e-5)
        (torch.Size([2, 4, 3, 5, 5]), True)
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}")
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, self.num_channels) + (1,) * (x.ndim - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


class LayerScale(nn.Module):
    """Multiply each channel by a learned factor initialised to ``init_value`` (ConvNeXt's gamma).

    Example:
        >>> LayerScale(3, 0.5)(torch.ones(1, 3, 2, 2)).flatten().tolist()[:2]
        [0.5, 0.5]
    """

    def __init__(self, num_channels: int, init_value: float = 1e-6) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.gamma = nn.Parameter(torch.full((num_channels,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view((1, self.num_channels) + (1,) * (x.ndim - 2))

    def extra_repr(self) -> str:
        return f"{self.num_channels}"


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole sample's branch with probability ``p``.

    Surviving samples are scaled by ``1 / (1 - p)``; in eval mode (or with ``p == 0``) this is
    the identity.

    Example:
        >>> DropPath(0.5).eval()(torch.ones(2, 1)).tolist()
        [[1.0], [1.0]]
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_norm(norm: str, channels: int, spatial_dims: int) -> nn.Module:
    """``"batch"`` (``BatchNormNd``), ``"layer"`` (:class:`LayerNormChannelsFirst`) or ``"none"``."""
    if norm == "batch":
        return batch_norm_type(spatial_dims)(channels)
    if norm == "layer":
        return LayerNormChannelsFirst(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")


def make_act(act: str) -> nn.Module:
    """``"leakyrelu"`` (slope 0.01), ``"gelu"`` or ``"none"``."""
    if act == "leakyrelu":
        return nn.LeakyReLU(0.01)
    if act == "gelu":
        return nn.GELU()
    if act == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTS)}")


class ConvBlock(nn.Sequential):
    """``conv -> norm -> act`` as an ``nn.Sequential`` with children ``conv``, ``norm``, ``act``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        spatial_dims: 2 or 3.
        kernel_size: per-axis or common kernel size.
        padding: per-axis or common zero padding (explicit integers only, never ``"same"``).
        dilation: per-axis or common dilation.
        stride: per-axis or common stride.
        norm: ``"batch"``, ``"layer"`` (channels-first LayerNorm) or ``"none"``.
        act: ``"leakyrelu"`` (slope 0.01), ``"gelu"`` or ``"none"``.

    Example:
        >>> block = ConvBlock(1, 8, spatial_dims=3, kernel_size=3)
        >>> block(torch.rand(2, 1, 6, 6, 6)).shape
        torch.Size([2, 8, 4, 4, 4])
        >>> [name for name, _ in block.named_children()]
        ['conv', 'norm', 'act']
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        kernel_size: IntOrSeq = 3,
        padding: IntOrSeq = 0,
        dilation: IntOrSeq = 1,
        stride: IntOrSeq = 1,
        norm: str = "batch",
        act: str = "leakyrelu",
    ) -> None:
        if isinstance(padding, str):
            raise ValueError(f"padding must be explicit integers, got {padding!r}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channel counts must be >= 1, got {in_channels} -> {out_channels}")
        conv = conv_type(spatial_dims)(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation
        )
        super().__init__()
        self.add_module("conv", conv)
        self.add_module("norm", make_norm(norm, out_channels, spatial_dims))
        self.add_module("act", make_act(act))


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; the shortcut is the identity unless given.

    ``body`` and ``shortcut`` must produce the same shape.

    Example:
        >>> pair = nn.Sequential(ConvBlock(4, 4, 2, padding=1), ConvBlock(4, 4, 2, padding=1))
        >>> Residual(pair)(torch.rand(1, 4, 5, 5)).shape
        torch.Size([1, 4, 5, 5])
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class CentreCrop(nn.Module):
    """Crop ``crop[i]`` voxels from both ends of spatial axis ``i``: the shortcut of a valid residual.

    An unpadded body shrinks each axis by ``2 * crop``; cropping the identity path by the same
    amount keeps the two paths aligned on the same centre voxels.

    Example:
        >>> CentreCrop((2, 1))(torch.rand(1, 3, 9, 9)).shape
        torch.Size([1, 3, 5, 7])
    """

    def __init__(self, crop: tuple[int, ...]) -> None:
        super().__init__()
        crop = tuple(int(c) for c in crop)
        if not crop or any(c < 0 for c in crop):
            raise ValueError(f"crop must be non-negative ints, one per spatial axis, got {crop!r}")
        self.crop = crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != len(self.crop) + 2:
            raise ValueError(
                f"CentreCrop{format_shape(self.crop)} expects {len(self.crop) + 2}-D input, got {format_shape(x.shape)}"
            )
        # x[:, :, c0:n0-c0, c1:n1-c1, ...] written with narrow (TorchScript has no tuples of slices);
        # start and length are clamped as slicing clamps them, so too short axes become empty.
        for axis, c in enumerate(self.crop):
            n = x.shape[axis + 2]
            x = x.narrow(axis + 2, min(c, n), max(n - 2 * c, 0))
        return x

    def extra_repr(self) -> str:
        return f"crop={self.crop}"


class ConcatResidual(nn.Module):
    """``cat([body(x), shortcut(x)], dim=1)``: a residual that keeps both paths' channels.

    ``body`` and ``shortcut`` must produce the same spatial shape.

    Example:
        >>> body = nn.Sequential(ConvBlock(2, 3, 2, dilation=3), ConvBlock(3, 3, 2, dilation=3))
        >>> short = ConvBlock(2, 5, 2, kernel_size=5, dilation=3)
        >>> ConcatResidual(body, short)(torch.rand(1, 2, 15, 15)).shape
        torch.Size([1, 8, 3, 3])
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x), self.shortcut(x)], dim=1)
