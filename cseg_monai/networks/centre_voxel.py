"""Centre-voxel classifiers: predict the class of the centre voxel of a small context patch.

Every net is a ``backbone`` (an ``nn.Sequential`` of standard modules and the small containers
of :mod:`cseg_monai.networks.blocks`) followed by a linear ``head``: one ``nn.ConvNd`` whose
kernel covers the backbone's remaining spatial extent, so a ``(B, C, *patch_size)`` input gives
a ``(B, n_classes, 1, 1[, 1])`` output. ``forward`` is just ``head(backbone(x))``.

Anisotropic patches (the per-axis rule)
---------------------------------------
The layers are planned per spatial axis at construction time from ``patch_size`` (see
:class:`PatchPlanner`). Walking the layers in order, with ``n`` the axis' current extent:

* an **unpadded (valid) convolution** that shrinks the axis by ``s = dilation * (k - 1)`` keeps
  its kernel along the axis if ``n - s >= 1``; otherwise its kernel (and dilation) along that
  axis become 1, i.e. it acts in-plane only;
* a **padded convolution** (size preserving) always keeps its kernel;
* a **downsampling layer** (pooling, or a strided conv with kernel = stride = ``f``) is applied
  along the axis only if ``n // f >= 1 + S``, where ``S`` is the total shrink of the valid
  convolutions still to come -- i.e. an axis is pooled only while it is at least ``f`` times
  the extent the rest of the net needs, so pooling never costs a later convolution its kernel.
  Otherwise the layer's kernel and stride along the axis become 1;
* the **head** kernel equals whatever extent is left.

For the nominal (isotropic) patch this reproduces the layer tables below exactly. For an ssTEM
patch of (Z, Y, X) = (8, 32, 32), Y and X follow the nominal plan while Z skips the pools it
cannot afford (``4_conv``: Z goes 8 -> 6 -> 4 -> 2 -> 1, its two max pools skipped, its last
conv in-plane (1x3x3), its average pool kept; ``4_conv_resnet``: Z is pooled 8 -> 4 -> 2 -> 1
and the average pool is skipped). Every axis must be at
least as long as the first layer's kernel (``min_extent``); smaller patches raise ``ValueError``.
Odd extents are pooled with floor (as ``nn.MaxPoolNd`` does), so for some sizes the last
row of a patch is not seen; ``receptive_field`` reports what the output really depends on.

The padded nets (``4_conv_resnet*``, ``convnext_tiny_3d``) see zeros beyond the patch border;
run densely on a larger image they see real context there instead, so dense and patch-wise
outputs agree exactly only for the unpadded nets (``4_conv``, ``4_conv_ln``,
``4_conv_resnet_valid*``, ``dilated_conv_2_layer*``, ``3_layer_8``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cseg_monai.networks.blocks import (
    CentreCrop,
    ConcatResidual,
    ConvBlock,
    Residual,
    avg_pool_type,
    conv_type,
    max_pool_type,
)

__all__ = [
    "PatchPlanner",
    "CentreVoxelNet",
    "FourConvNet",
    "FourConvResNet",
    "DilatedConvNet",
    "ThreeLayerNet",
]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _axis(value: int, applied: Sequence[bool], off: int = 1) -> tuple[int, ...]:
    return tuple(value if a else off for a in applied)


class PatchPlanner:
    """Plans each layer per spatial axis for a patch size (see the module docstring's rule).

    A net's backbone builder is run twice: first with a *recording* planner (``future=None``)
    that applies every layer and only records the sequence of valid-conv shrinks and
    downsamplings, then with a planner that knows that sequence and decides per axis. The
    planner also tracks the receptive field and the accumulated stride ("jump") per axis.

    Args:
        patch_size: the input's spatial size.
        future: the sequence recorded by a first pass (``None``: record).

    Example:
        >>> p = PatchPlanner((8, 32))
        >>> p.conv(3)["kernel_size"], p.extent
        ((3, 3), [6, 30])
    """

    def __init__(self, patch_size: Sequence[int], future: Sequence[int | None] | None = None) -> None:
        self.extent = [int(n) for n in patch_size]
        self.receptive_field = [1] * len(self.extent)
        self.jump = [1] * len(self.extent)
        self.ops: list[int | None] = []  # shrink of each valid op, None for each downsampling
        self._future = None if future is None else list(future)

    @property
    def recording(self) -> bool:
        return self._future is None

    def valid(self, shrink: int) -> tuple[bool, ...]:
        """Decide a size-reducing stride-1 layer (or group of parallel layers) shrinking by ``shrink``.

        Returns, per axis, whether the layer keeps its kernel there; updates extents and RF.
        """
        self.ops.append(shrink)
        applied = []
        for i, n in enumerate(self.extent):
            a = shrink <= 0 or self.recording or n - shrink >= 1
            if a:
                self.extent[i] = n - shrink
                self.receptive_field[i] += max(shrink, 0) * self.jump[i]
            applied.append(a)
        return tuple(applied)

    def conv(self, kernel_size: int, dilation: int = 1, padding: int = 0) -> dict[str, tuple[int, ...]]:
        """Per-axis ``kernel_size``/``dilation``/``padding`` of a stride-1 conv (``nn.ConvNd`` kwargs)."""
        reach = dilation * (kernel_size - 1)
        if 2 * padding > reach:
            raise ValueError(f"padding {padding} exceeds the reach of kernel {kernel_size} dilation {dilation}")
        if padding:  # padded convs may not shrink partially: size preserving only
            if 2 * padding != reach:
                raise ValueError("padded convolutions must preserve size")
            applied = self.valid(0)
            self.receptive_field = [r + reach * j for r, j in zip(self.receptive_field, self.jump, strict=True)]
        else:
            applied = self.valid(reach)
        return {
            "kernel_size": _axis(kernel_size, applied),
            "dilation": _axis(dilation, applied),
            "padding": _axis(padding, applied, 0),
        }

    def down(self, factor: int) -> tuple[bool, ...]:
        """Decide a downsampling layer with kernel = stride = ``factor``; per-axis ``applied`` flags."""
        index = len(self.ops)
        self.ops.append(None)
        need = 1
        if self._future is not None:
            need += sum(s for s in self._future[index + 1 :] if s is not None and s > 0)
        applied = []
        for i, n in enumerate(self.extent):
            a = self.recording or n // factor >= need
            if a:
                self.extent[i] = n // factor
                self.receptive_field[i] += (factor - 1) * self.jump[i]
                self.jump[i] *= factor
            applied.append(a)
        return tuple(applied)

    def head(self) -> tuple[int, ...]:
        """The head's kernel: the remaining extent of every axis."""
        kernel = tuple(max(n, 1) for n in self.extent)
        for i, k in enumerate(kernel):
            self.receptive_field[i] += (k - 1) * self.jump[i]
            self.extent[i] = 1
        return kernel


def _norm_variant(base: str, norm: str) -> str:
    """The registry name of a backbone family's ``norm`` variant (``"batch"`` or ``"layer"`` -> ``_ln``)."""
    if norm not in ("batch", "layer"):
        raise ValueError(f"norm must be 'batch' or 'layer', got {norm!r}")
    return base if norm == "batch" else f"{base}_ln"


class CentreVoxelNet(nn.Module):
    """Base class: ``head(backbone(x))`` with a backbone planned for ``patch_size``.

    Subclasses call ``super().__init__`` (which validates the common arguments), store their
    own options, then call :meth:`_assemble`, which runs :meth:`build_backbone` through a
    :class:`PatchPlanner` twice (record, then plan) and adds the head.

    Attributes:
        backbone: ``nn.Sequential`` of the layers in the subclass's layer table.
        head: ``nn.ConvNd(channels, n_classes, kernel_size=head_kernel)``.
        patch_size: the planned input size.
        head_kernel: the head's kernel size per axis.
        receptive_field: per axis, the input extent the output depends on (for the padded nets
            this theoretical value can exceed the patch).
        strides: per axis, the accumulated downsampling factor before the head.
    """

    #: first layer's kernel extent: the smallest accepted patch size per axis.
    min_extent: int = 3

    def __init__(
        self,
        n_classes: int,
        spatial_dims: int,
        in_channels: int,
        patch_size: Sequence[int] | None,
        nominal_extent: int,
        name: str,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if not _is_int(n_classes) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
        if not _is_int(in_channels) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        nominal = (nominal_extent,) * spatial_dims
        if patch_size is None:
            patch_size = nominal
        patch = tuple(patch_size)
        if len(patch) != spatial_dims or not all(_is_int(n) for n in patch):
            raise ValueError(
                f"patch_size must be {spatial_dims} ints for spatial_dims={spatial_dims}, got {patch_size!r}"
            )
        patch = tuple(int(n) for n in patch)
        if min(patch) < self.min_extent:
            raise ValueError(
                f"patch_size {patch} is too small for {name!r}: every axis needs at least "
                f"{self.min_extent} voxels (minimum patch {(self.min_extent,) * spatial_dims}); "
                f"the nominal patch is {nominal}"
            )
        self.name = name
        self.n_classes = int(n_classes)
        self.spatial_dims = spatial_dims
        self.in_channels = int(in_channels)
        self.patch_size = patch
        self.nominal_patch_size = nominal

    def build_backbone(self, plan: PatchPlanner) -> tuple[list[nn.Module], int]:
        """The backbone's layers, planned with ``plan``, and its output channel count."""
        raise NotImplementedError

    def _assemble(self) -> None:
        record = PatchPlanner(self.patch_size)
        self.build_backbone(record)
        plan = PatchPlanner(self.patch_size, future=record.ops)
        layers, channels = self.build_backbone(plan)
        if min(plan.extent) < 1:  # pragma: no cover - the rule keeps every extent >= 1
            raise ValueError(f"patch_size {self.patch_size} leaves no voxel for {self.name!r}")
        self.strides = tuple(plan.jump)
        self.head_kernel = plan.head()
        self.receptive_field = tuple(plan.receptive_field)
        self.backbone = nn.Sequential(*layers)
        self.head = conv_type(self.spatial_dims)(channels, self.n_classes, self.head_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *patch_size)`` -> ``(B, n_classes, 1, 1[, 1])``."""
        return self.head(self.backbone(x))

    # helpers for subclasses -------------------------------------------------------------
    def _pool(self, plan: PatchPlanner, kind: str, factor: int = 2) -> nn.Module:
        applied = plan.down(factor)
        cls: Callable[..., nn.Module] = (
            max_pool_type(self.spatial_dims) if kind == "max" else avg_pool_type(self.spatial_dims)
        )
        k = _axis(factor, applied)
        return cls(kernel_size=k, stride=k)


class FourConvNet(CentreVoxelNet):
    """``4_conv`` / ``4_conv_ln``: four unpadded 3-kernel ConvBlocks (GELU) with max/avg pooling.

    ConvBlock = conv -> norm -> GELU (the spec states GELU for this family; it is used in all
    four blocks). ``norm="batch"`` is ``4_conv``, ``norm="layer"`` (channels-first LayerNorm)
    is ``4_conv_ln``. No padding anywhere, so dense inference is exact.

    Layer table (nominal patch 32 per axis; the same numbers hold in 2D and 3D)::

        layer        module       channels  spatial
        input        -            1         32
        backbone.0   ConvBlock    16        30
        backbone.1   MaxPool      16        15
        backbone.2   ConvBlock    32        13
        backbone.3   MaxPool      32        6
        backbone.4   ConvBlock    64        4
        backbone.5   ConvBlock    128       2
        backbone.6   AvgPool      128       1
        head         Conv k1      n_classes 1

    Receptive field at 32: 30 per axis (the floors of the two max pools drop the last rows).

    Args:
        n_classes: output classes.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        patch_size: input patch (default 32 per axis); anisotropic sizes follow the module rule.
        norm: ``"batch"`` or ``"layer"``.

    Example:
        >>> net = FourConvNet(n_classes=2, spatial_dims=3, patch_size=(8, 32, 32)).eval()
        >>> net(torch.rand(2, 1, 8, 32, 32)).shape
        torch.Size([2, 2, 1, 1, 1])
    """

    def __init__(
        self,
        n_classes: int,
        spatial_dims: int = 3,
        in_channels: int = 1,
        patch_size: Sequence[int] | None = None,
        norm: str = "batch",
    ) -> None:
        name = _norm_variant("4_conv", norm)
        super().__init__(n_classes, spatial_dims, in_channels, patch_size, 32, name)
        self.norm = norm
        self._assemble()

    def build_backbone(self, plan: PatchPlanner) -> tuple[list[nn.Module], int]:
        d, kw = self.spatial_dims, {"norm": self.norm, "act": "gelu"}
        layers = [
            ConvBlock(self.in_channels, 16, d, **plan.conv(3), **kw),
            self._pool(plan, "max"),
            ConvBlock(16, 32, d, **plan.conv(3), **kw),
            self._pool(plan, "max"),
            ConvBlock(32, 64, d, **plan.conv(3), **kw),
            ConvBlock(64, 128, d, **plan.conv(3), **kw),
            self._pool(plan, "avg"),
        ]
        return layers, 128


class FourConvResNet(CentreVoxelNet):
    """``4_conv_resnet`` / ``4_conv_resnet_ln``: padded ConvBlocks with residual pairs.

    ``padding="valid"`` (``4_conv_resnet_valid`` / ``4_conv_resnet_valid_ln``) builds the same
    layer list with unpadded convolutions and identity shortcuts centre-cropped to the body's
    output (:class:`~cseg_monai.networks.blocks.CentreCrop`). That net is translation
    equivariant, so :class:`~cseg_monai.inferers.CentreVoxelInferer` runs it densely with
    exactly the per-patch result; its nominal patch is 102 per axis (layer table below).

    ConvBlock = conv(k3, padding 1) -> norm -> LeakyReLU(0.01). A residual pair is
    ``Residual(Sequential(ConvBlock(c, c), ConvBlock(c, c)))`` = ``x + body(x)`` (identity
    skip, no activation after the sum). The padding sees zeros at the patch border, so dense
    inference matches patch-wise inference only away from patch-border effects.

    Layer table (nominal patch 32 per axis; the same numbers hold in 2D and 3D)::

        layer         module              channels  spatial
        input         -                   1         32
        backbone.0    ConvBlock           16        32
        backbone.1    MaxPool             16        16
        backbone.2    ConvBlock           32        16
        backbone.3    Residual(pair)      32        16
        backbone.4    MaxPool             32        8
        backbone.5    ConvBlock           64        8
        backbone.6    Residual(pair)      64        8
        backbone.7    MaxPool             64        4
        backbone.8    ConvBlock           128       4
        backbone.9    Residual(pair)      128       4
        backbone.10   AvgPool             128       2
        head          Conv k2             n_classes 1

    Receptive field (theoretical, padded) at 32: 118 per axis.

    ``padding="valid"`` (nominal patch 102 per axis)::

        layer         module                    channels  spatial
        input         -                         1         102
        backbone.0    ConvBlock                 16        100
        backbone.1    MaxPool                   16        50
        backbone.2    ConvBlock                 32        48
        backbone.3    Residual(pair, crop 2)    32        44
        backbone.4    MaxPool                   32        22
        backbone.5    ConvBlock                 64        20
        backbone.6    Residual(pair, crop 2)    64        16
        backbone.7    MaxPool                   64        8
        backbone.8    ConvBlock                 128       6
        backbone.9    Residual(pair, crop 2)    128       2
        backbone.10   AvgPool                   128       1
        head          Conv k1                   n_classes 1

    Receptive field at 102: 102 per axis (exactly the patch).

    Args:
        n_classes: output classes.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        patch_size: input patch (default 32 per axis); anisotropic sizes follow the module rule.
        norm: ``"batch"`` (``4_conv_resnet``) or ``"layer"`` (``4_conv_resnet_ln``).
        padding: ``"same"`` (the seed project's net) or ``"valid"`` (dense-exact, see above).

    Example:
        >>> net = FourConvResNet(n_classes=3, spatial_dims=2).eval()
        >>> net(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 3, 1, 1])
        >>> FourConvResNet(n_classes=3, spatial_dims=2, padding="valid").patch_size
        (102, 102)
    """

    def __init__(
        self,
        n_classes: int,
        spatial_dims: int = 3,
        in_channels: int = 1,
        patch_size: Sequence[int] | None = None,
        norm: str = "batch",
        padding: str = "same",
    ) -> None:
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        base = "4_conv_resnet" if padding == "same" else "4_conv_resnet_valid"
        name = _norm_variant(base, norm)
        super().__init__(n_classes, spatial_dims, in_channels, patch_size, 32 if padding == "same" else 102, name)
        self.norm = norm
        self.padding = padding
        self._assemble()

    def _block(self, plan: PatchPlanner, cin: int, cout: int) -> ConvBlock:
        pad = 1 if self.padding == "same" else 0
        return ConvBlock(cin, cout, self.spatial_dims, **plan.conv(3, padding=pad), norm=self.norm)

    def _pair(self, plan: PatchPlanner, c: int) -> Residual:
        body = nn.Sequential(self._block(plan, c, c), self._block(plan, c, c))
        if self.padding == "same":
            return Residual(body)
        # the body shrinks each axis by the sum of its convs' reaches; crop the identity to match
        reach = [0] * self.spatial_dims
        for block in body:
            conv = block.conv
            for i, (k, d) in enumerate(zip(conv.kernel_size, conv.dilation, strict=True)):
                reach[i] += d * (k - 1)
        return Residual(body, CentreCrop(tuple(r // 2 for r in reach)))

    def build_backbone(self, plan: PatchPlanner) -> tuple[list[nn.Module], int]:
        layers = [
            self._block(plan, self.in_channels, 16),
            self._pool(plan, "max"),
            self._block(plan, 16, 32),
            self._pair(plan, 32),
            self._pool(plan, "max"),
            self._block(plan, 32, 64),
            self._pair(plan, 64),
            self._pool(plan, "max"),
            self._block(plan, 64, 128),
            self._pair(plan, 128),
            self._pool(plan, "avg"),
        ]
        return layers, 128


class DilatedConvNet(CentreVoxelNet):
    """``dilated_conv_2_layer`` (32) / ``dilated_conv_2_layer_16`` (16, no pooling).

    ConvBlock = conv (unpadded) -> BatchNorm -> LeakyReLU(0.01). The dilated stage is a
    concatenating residual: ``cat([body(x), shortcut(x)])`` with
    ``body = ConvBlock(16, 32, k3, dilation 3) -> ConvBlock(32, 32, k3, dilation 3)`` and
    ``shortcut = ConvBlock(16, 32, k5, dilation 3)``; both shrink each axis by 12, so the
    concatenation has 64 channels. Along an axis too short for the stage (< 13 voxels) all
    three convolutions become in-plane together (the stage is planned as one group). No
    padding anywhere, so dense inference is exact.

    Layer table, ``pooling=True`` (nominal patch 32 per axis; same in 2D and 3D)::

        layer        module            channels  spatial
        input        -                 1         32
        backbone.0   ConvBlock         16        30
        backbone.1   MaxPool           16        15
        backbone.2   ConcatResidual    64        3
        backbone.3   AvgPool           64        1
        head         Conv k1           n_classes 1

    Layer table, ``pooling=False`` (nominal patch 16 per axis)::

        layer        module            channels  spatial
        input        -                 1         16
        backbone.0   ConvBlock         16        14
        backbone.1   ConcatResidual    64        2
        head         Conv k2           n_classes 1

    Receptive field: 30 at 32 (the average pool's floor drops a row), 16 at 16.

    Args:
        n_classes: output classes.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        patch_size: input patch (default 32, or 16 without pooling).
        pooling: ``True`` for ``dilated_conv_2_layer``, ``False`` for ``dilated_conv_2_layer_16``.

    Example:
        >>> net = DilatedConvNet(n_classes=2, spatial_dims=3, pooling=False).eval()
        >>> net(torch.rand(1, 1, 16, 16, 16)).shape
        torch.Size([1, 2, 1, 1, 1])
    """

    def __init__(
        self,
        n_classes: int,
        spatial_dims: int = 3,
        in_channels: int = 1,
        patch_size: Sequence[int] | None = None,
        pooling: bool = True,
    ) -> None:
        name = "dilated_conv_2_layer" if pooling else "dilated_conv_2_layer_16"
        super().__init__(n_classes, spatial_dims, in_channels, patch_size, 32 if pooling else 16, name)
        self.pooling = bool(pooling)
        self._assemble()

    def _dilated_stage(self, plan: PatchPlanner, cin: int) -> ConcatResidual:
        applied = plan.valid(12)
        d = self.spatial_dims

        def block(i: int, o: int, k: int) -> ConvBlock:
            return ConvBlock(i, o, d, kernel_size=_axis(k, applied), dilation=_axis(3, applied))

        return ConcatResidual(nn.Sequential(block(cin, 32, 3), block(32, 32, 3)), block(cin, 32, 5))

    def build_backbone(self, plan: PatchPlanner) -> tuple[list[nn.Module], int]:
        layers: list[nn.Module] = [ConvBlock(self.in_channels, 16, self.spatial_dims, **plan.conv(3))]
        if self.pooling:
            layers.append(self._pool(plan, "max"))
        layers.append(self._dilated_stage(plan, 16))
        if self.pooling:
            layers.append(self._pool(plan, "avg"))
        return layers, 64


class ThreeLayerNet(CentreVoxelNet):
    """``3_layer_8``: three unpadded 3-kernel ConvBlocks for 8-voxel patches.

    ConvBlock = conv (unpadded) -> BatchNorm -> LeakyReLU(0.01). No pooling, no padding, so
    dense inference is exact.

    Layer table (nominal patch 8 per axis; the same numbers hold in 2D and 3D)::

        layer        module       channels  spatial
        input        -            1         8
        backbone.0   ConvBlock    16        6
        backbone.1   ConvBlock    32        4
        backbone.2   ConvBlock    64        2
        head         Conv k2      n_classes 1

    Receptive field: 8 per axis (the whole patch).

    Args:
        n_classes: output classes.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        patch_size: input patch (default 8 per axis).

    Example:
        >>> ThreeLayerNet(n_classes=2, spatial_dims=2).eval()(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4, 2, 1, 1])
    """

    def __init__(
        self,
        n_classes: int,
        spatial_dims: int = 3,
        in_channels: int = 1,
        patch_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__(n_classes, spatial_dims, in_channels, patch_size, 8, "3_layer_8")
        self._assemble()

    def build_backbone(self, plan: PatchPlanner) -> tuple[list[nn.Module], int]:
        d = self.spatial_dims
        layers = [
            ConvBlock(self.in_channels, 16, d, **plan.conv(3)),
            ConvBlock(16, 32, d, **plan.conv(3)),
            ConvBlock(32, 64, d, **plan.conv(3)),
        ]
        return layers, 64
