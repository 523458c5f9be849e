"""Dense (fully convolutional) inference for centre-voxel classifiers.

A :class:`~cseg_monai.networks.CentreVoxelNet` maps a ``(B, C, *patch_size)`` patch to the
logits of the patch's *centre voxel*, ``(B, n_classes, 1, 1[, 1])``. Applying it per voxel
repeats almost all of the work of the neighbouring patches; this module computes the same
numbers for every voxel of an image or volume in ONE fully convolutional pass.

Definitions
-----------
* **Centre**: along an axis of patch size ``p`` the centre is index ``p // 2`` (for even
  ``p`` the later of the two middle voxels). The patch of voxel ``v`` covers
  ``v - p // 2 .. v - p // 2 + p - 1``.
* **Border**: the input is extended by *reflect* padding (mirror without repeating the edge
  voxel, as ``numpy.pad(mode="reflect")`` / ``torch.nn.functional.pad(mode="reflect")``),
  by ``p // 2`` before and ``p - 1 - p // 2`` after, so every voxel has a full patch. The
  reflection is applied repeatedly where an axis is shorter than the halo (and an axis of
  length 1 is replicated).
* **Per-patch reference** (:func:`centre_voxel_per_patch`): cut the padded patch of each voxel
  and run the net on it in eval mode.

The dense equivalence holds for any fixed offset as long as the dense input is padded by the
same offset; ``p // 2`` is the convention (it is what the halo ``p // 2`` / ``p - 1 - p // 2``
implements and what the tests check). Note that a net may not read its whole patch: the floors
of odd-sized poolings drop the last rows (``4_conv`` at 32 reads rows 0..29 of 32), so what a
prediction depends on can be slightly off-centre; the net's ``receptive_field`` says how much.

The dilated ("filter rarefaction") rewrite
------------------------------------------
Walk the layers in order, keeping per axis the accumulated stride ``J`` (the "jump") of the
original net. Every layer is replaced by its stride-1 version whose kernel taps are spread by
``J``:

* ``ConvNd(k, stride s, dilation d)`` -> ``ConvNd(k, stride 1, dilation d * J)``, then ``J *= s``;
* ``MaxPoolNd(k, stride s, dilation d)`` -> ``MaxPoolNd(k, stride 1, dilation d * J)``, ``J *= s``;
* ``AvgPoolNd(k, stride s)`` (torch's average pool has no ``dilation``) -> the mean of the
  ``prod(k)`` input slices shifted by ``t * J`` (``t`` over the kernel taps), ``J *= s``;
* the head (a ``ConvNd`` covering the remaining extent) likewise gets dilation ``J``;
* BatchNorm (eval statistics), channels-first LayerNorm, LayerScale and activations are
  point-wise and kept; DropPath / Dropout become the identity (eval mode);
* ``nn.Sequential`` (hence ``ConvBlock``), ``Residual`` and ``ConcatResidual`` are rebuilt
  around their rewritten children (both branches must end with the same jump and reach).

Output position ``i`` of the rewritten net then reads exactly the input voxels
``i + offset`` that the original net reads in a patch starting at ``i``: with every
per-patch output being a single voxel, the floors of odd-sized poolings drop only rows the
per-patch net never reads either. So the dense output on the padded input, position ``i``,
equals the per-patch prediction for voxel ``i`` (up to float summation order, ~1e-6).
The rewritten modules *share* the original's parameters and buffers, so later weight
updates are seen without rebuilding; BatchNorm always uses its running statistics.

This holds only for translation-equivariant nets: a **padded** convolution or pooling sees
zeros at every patch border per patch but real context densely, so the padded nets
(``4_conv_resnet*``, ``convnext_tiny_3d``) are refused with a ``ValueError``; use the (slow)
:func:`centre_voxel_per_patch` for them.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import Inferer
from torch import nn

from cseg_monai.common.tiling import iter_blocks, reflect_indices
from cseg_monai.networks.blocks import (
    CentreCrop,
    ConcatResidual,
    DropPath,
    LayerNormChannelsFirst,
    LayerScale,
    Residual,
)
from cseg_monai.networks.centre_voxel import CentreVoxelNet

__all__ = ["CentreVoxelInferer", "DenseCentreVoxelNet", "centre_voxel_per_patch", "dense_rewrite", "reflect_indices"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_EVAL_IDENTITY = (DropPath, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity)
_POINTWISE = (
    LayerNormChannelsFirst, LayerScale, nn.LeakyReLU, nn.ReLU, nn.GELU, nn.ELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
)  # fmt: skip
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX_POOL_FN = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AXES = {2: "(B, C, Y, X)", 3: "(B, C, Z, Y, X)"}

Ints = tuple[int, ...]


def _tuple(value: int | Sequence[int], n: int) -> Ints:
    if isinstance(value, int):
        return (int(value),) * n
    out = tuple(int(v) for v in value)
    return out * n if len(out) == 1 else out


def _gather_box(volume: torch.Tensor, starts: Sequence[int], stops: Sequence[int]) -> torch.Tensor:
    """``volume``'s reflect-padded box ``[starts, stops)`` over the spatial axes (original coordinates)."""
    out = volume
    for axis, (a, b) in enumerate(zip(starts, stops, strict=True)):
        n = volume.shape[2 + axis]
        if a == 0 and b == n:
            continue
        out = out.index_select(2 + axis, torch.from_numpy(reflect_indices(n, a, b)).to(volume.device))
    return out


# ---------------------------------------------------------------------------------------------
# the rewrite
# ---------------------------------------------------------------------------------------------
class _DenseConv(nn.Module):
    """A stride-1, dilated view of ``conv`` (its weight and bias are shared, not copied)."""

    def __init__(self, conv: nn.Module, dilation: Ints) -> None:
        super().__init__()
        self.conv = conv
        self.dilation = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = _CONV_FN[len(self.dilation)]
        return fn(x, self.conv.weight, self.conv.bias, 1, 0, self.dilation, self.conv.groups)

    def extra_repr(self) -> str:
        return f"dilation={self.dilation}"


class _DenseMaxPool(nn.Module):
    def __init__(self, kernel_size: Ints, dilation: Ints) -> None:
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _MAX_POOL_FN[len(self.kernel_size)](x, self.kernel_size, 1, 0, self.dilation)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}"


class _DenseAvgPool(nn.Module):
    """Stride-1 average pool with dilation: the mean of the kernel's shifted slices."""

    def __init__(self, kernel_size: Ints, dilation: Ints, divisor: float) -> None:
        super().__init__()
        self.kernel_size, self.dilation, self.divisor = kernel_size, dilation, divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = [x.shape[2 + i] - d * (k - 1) for i, (k, d) in enumerate(zip(self.kernel_size, self.dilation))]
        total: torch.Tensor | None = None
        for taps in itertools.product(*(range(k) for k in self.kernel_size)):
            index = (slice(None), slice(None)) + tuple(
                slice(t * d, t * d + n) for t, d, n in zip(taps, self.dilation, sizes, strict=True)
            )
            total = x[index] if total is None else total + x[index]
        assert total is not None
        return total / self.divisor

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}"


class _EvalBatchNorm(nn.Module):
    """``bn`` with its running statistics, whatever ``bn.training`` is (shared parameters)."""

    def __init__(self, bn: nn.Module) -> None:
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _padded_layers(module: nn.Module) -> list[str]:
    """Names of the convs/pools of ``module`` that pad (or use ``ceil_mode``)."""
    found = []
    for name, m in module.named_modules():
        if isinstance(m, _CONVS + _MAX_POOLS + _AVG_POOLS):
            padding = m.padding
            if isinstance(padding, str):
                reach = [d * (k - 1) for k, d in zip(m.kernel_size, m.dilation, strict=True)]
                padded = padding != "valid" and any(reach)
            else:
                padded = any(_tuple(padding, 1))
            if padded or getattr(m, "ceil_mode", False):
                found.append(f"{name or '<root>'} ({type(m).__name__}, padding={padding})")
    return found


def _rewrite(module: nn.Module, jump: Ints, reach: Ints, where: str) -> tuple[nn.Module, Ints, Ints]:
    """Rewrite ``module`` entered with accumulated stride ``jump``; returns (module, jump, reach)."""
    n = len(jump)
    if isinstance(module, _CONVS):
        k, s, d = (_tuple(v, n) for v in (module.kernel_size, module.stride, module.dilation))
        dil = tuple(di * j for di, j in zip(d, jump, strict=True))
        reach = tuple(r + (ki - 1) * di for r, ki, di in zip(reach, k, dil, strict=True))
        return _DenseConv(module, dil), tuple(j * si for j, si in zip(jump, s, strict=True)), reach
    if isinstance(module, _MAX_POOLS + _AVG_POOLS):
        if getattr(module, "return_indices", False):
            raise NotImplementedError(f"{where}: {type(module).__name__} with return_indices is not supported")
        k = _tuple(module.kernel_size, n)
        s = _tuple(module.stride if module.stride is not None else module.kernel_size, n)
        d = _tuple(getattr(module, "dilation", 1), n)
        dil = tuple(di * j for di, j in zip(d, jump, strict=True))
        reach = tuple(r + (ki - 1) * di for r, ki, di in zip(reach, k, dil, strict=True))
        new_jump = tuple(j * si for j, si in zip(jump, s, strict=True))
        if isinstance(module, _MAX_POOLS):
            return _DenseMaxPool(k, dil), new_jump, reach
        divisor = module.divisor_override or math.prod(k)
        return _DenseAvgPool(k, dil, float(divisor)), new_jump, reach
    if isinstance(module, _BATCH_NORMS):
        if module.running_mean is None or module.running_var is None:
            raise NotImplementedError(f"{where}: {type(module).__name__} without running statistics is not per-voxel")
        return _EvalBatchNorm(module), jump, reach
    if isinstance(module, _EVAL_IDENTITY):
        return nn.Identity(), jump, reach
    if isinstance(module, _POINTWISE):
        return module, jump, reach
    if isinstance(module, nn.Sequential):  # includes ConvBlock
        layers = []
        for name, child in module.named_children():
            layer, jump, reach = _rewrite(child, jump, reach, f"{where}.{name}")
            layers.append(layer)
        return nn.Sequential(*layers), jump, reach
    if isinstance(module, CentreCrop):
        crop = tuple(c * j for c, j in zip(module.crop, jump, strict=True))
        return CentreCrop(crop), jump, tuple(r + 2 * c for r, c in zip(reach, crop, strict=True))
    if isinstance(module, (Residual, ConcatResidual)):
        body, jb, rb = _rewrite(module.body, jump, reach, f"{where}.body")
        short, js, rs = _rewrite(module.shortcut, jump, reach, f"{where}.shortcut")
        if jb != js or rb != rs:
            raise NotImplementedError(
                f"{where}: {type(module).__name__} branches end with different strides/receptive fields "
                f"(body {jb}/{rb}, shortcut {js}/{rs}); they cannot be aligned densely"
            )
        return type(module)(body, short), jb, rb
    raise NotImplementedError(
        f"{where}: module type {type(module).__name__} is not supported by the dense centre-voxel rewrite"
    )


class DenseCentreVoxelNet(nn.Module):
    """The fully convolutional (dilated, stride-1) version of a :class:`CentreVoxelNet`.

    Built by :func:`dense_rewrite`. Maps ``(B, C, *S)`` with ``S >= reach + 1`` to
    ``(B, n_classes, *(S - reach))``; output position ``i`` is the net's prediction on the
    patch whose first voxel is input position ``i``.

    Attributes:
        reach: per axis, the input extent minus one that one output voxel depends on
            (the net's ``receptive_field - 1``).
        patch_size, spatial_dims, in_channels, n_classes: those of the original net.
    """

    def __init__(self, net: CentreVoxelNet) -> None:
        super().__init__()
        padded = _padded_layers(net)
        if padded:
            raise ValueError(
                f"{net.name!r} has padded (or ceil_mode) layers: {', '.join(padded[:3])}"
                f"{' ...' if len(padded) > 3 else ''}. Per patch they see zeros at the patch border, "
                "densely they see real context, so a dense rewrite cannot reproduce the per-patch "
                "predictions; use cseg_monai.inferers.centre_voxel_per_patch instead (slow but exact)"
            )
        n = net.spatial_dims
        jump, reach = (1,) * n, (0,) * n
        backbone, jump, reach = _rewrite(net.backbone, jump, reach, "backbone")
        head, jump, reach = _rewrite(net.head, jump, reach, "head")
        self.body = nn.Sequential(backbone, head)
        self.reach: Ints = reach
        self.patch_size: Ints = tuple(net.patch_size)
        self.spatial_dims = n
        self.in_channels = net.in_channels
        self.n_classes = net.n_classes
        if any(r + 1 > p for r, p in zip(reach, self.patch_size, strict=True)):  # pragma: no cover - sanity
            raise ValueError(f"receptive field {tuple(r + 1 for r in reach)} exceeds the patch {self.patch_size}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def dense_rewrite(net: CentreVoxelNet) -> DenseCentreVoxelNet:
    """The dilated, stride-1 rewrite of ``net`` (parameters shared, see the module docstring).

    Raises:
        TypeError: ``net`` is not a :class:`CentreVoxelNet`.
        ValueError: ``net`` pads (not translation-equivariant per patch).
        NotImplementedError: a module type the rewrite does not know (named in the message).

    Example:
        >>> from cseg_monai.networks import build_centre_voxel_net
        >>> dense = dense_rewrite(build_centre_voxel_net("3_layer_8", 2, spatial_dims=2))
        >>> dense.reach, tuple(dense(torch.rand(1, 1, 10, 12)).shape)
        ((7, 7), (1, 2, 3, 5))
    """
    if not isinstance(net, CentreVoxelNet):
        raise TypeError(f"expected a CentreVoxelNet, got {type(net).__name__}")
    return DenseCentreVoxelNet(net)


# ---------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------
def _check_volume(volume: Any, spatial_dims: int, in_channels: int) -> None:
    if not isinstance(volume, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(volume).__name__}")
    if volume.ndim != spatial_dims + 2:
        raise ValueError(
            f"inputs must be a {spatial_dims + 2}-D {_AXES[spatial_dims]} tensor for a net with "
            f"spatial_dims={spatial_dims}, got shape {tuple(volume.shape)}"
        )
    if volume.shape[1] != in_channels:
        raise ValueError(f"inputs have {volume.shape[1]} channels, the net expects in_channels={in_channels}")
    if min(volume.shape) < 1:
        raise ValueError(f"inputs must not be empty, got shape {tuple(volume.shape)}")


def _net_device(net: nn.Module) -> torch.device:
    for p in net.parameters():
        return p.device
    return torch.device("cpu")  # pragma: no cover - every CentreVoxelNet has parameters


def _net_dtype(net: nn.Module) -> torch.dtype:
    for p in net.parameters():
        return p.dtype
    return torch.float32  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# per-patch reference
# ---------------------------------------------------------------------------------------------
def centre_voxel_per_patch(
    net: CentreVoxelNet,
    volume: torch.Tensor,
    batch_size: int = 512,
    voxels: torch.Tensor | np.ndarray | Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:
    """The net's prediction for each voxel, one reflect-padded patch per voxel (the reference).

    The patch of voxel ``v`` covers ``v - p // 2 .. v - p // 2 + p - 1`` per axis (``p`` the
    net's ``patch_size``), reflect-padded at the borders; the net runs in eval mode (its mode is
    restored afterwards) without gradients. Exact for every net, padded ones included, but it
    costs one full forward per voxel.

    Args:
        net: a :class:`CentreVoxelNet`.
        volume: ``(B, in_channels, [Z,] Y, X)``.
        batch_size: patches per forward pass.
        voxels: ``(V, spatial_dims)`` integer coordinates to evaluate; ``None``: every voxel.

    Returns:
        Logits ``(B, n_classes, [Z,] Y, X)``, or ``(B, n_classes, V)`` when ``voxels`` is given,
        on ``volume``'s device.

    Example:
        >>> from cseg_monai.networks import build_centre_voxel_net
        >>> net = build_centre_voxel_net("3_layer_8", 2, spatial_dims=2)
        >>> centre_voxel_per_patch(net, torch.rand(1, 1, 5, 6), voxels=[[0, 0], [4, 5]]).shape
        torch.Size([1, 2, 2])
    """
    if not isinstance(net, CentreVoxelNet):
        raise TypeError(f"net must be a CentreVoxelNet, got {type(net).__name__}")
    n = net.spatial_dims
    _check_volume(volume, n, net.in_channels)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    shape = tuple(volume.shape[2:])
    if voxels is None:
        grids = torch.meshgrid(*(torch.arange(s) for s in shape), indexing="ij")
        coords = torch.stack([g.reshape(-1) for g in grids], dim=1)
    else:
        coords = torch.as_tensor(np.asarray(voxels))
        if coords.ndim != 2 or coords.shape[1] != n or coords.dtype.is_floating_point or coords.dtype == torch.bool:
            raise ValueError(f"voxels must be integer coordinates of shape (V, {n}), got {tuple(coords.shape)}")
        coords = coords.long()
        bounds = torch.tensor(shape)
        if ((coords < 0) | (coords >= bounds)).any():
            raise ValueError(f"voxels must lie inside the spatial shape {shape}")
    patch = net.patch_size
    before = tuple(p // 2 for p in patch)
    padded = _gather_box(volume, [-b for b in before], [s - b + p for s, b, p in zip(shape, before, patch)])
    device, dtype = _net_device(net), _net_dtype(net)
    padded = padded.to(device=device, dtype=dtype)
    b_count = volume.shape[0]
    chunk = max(1, batch_size // b_count)
    outputs = []
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for start in range(0, coords.shape[0], chunk):
                c = coords[start : start + chunk].to(device)  # (V, n), patch start in padded coords = voxel
                index: list[Any] = [slice(None), slice(None)]
                for axis in range(n):
                    view = [1] * (n + 1)
                    view[1 + axis] = patch[axis]
                    offs = torch.arange(patch[axis], device=device)
                    index.append(c[:, axis].view(-1, *([1] * n)) + offs.view(view))
                patches = padded[tuple(index)]  # (B, C, V, *patch)
                patches = patches.transpose(0, 1).flatten(1, 2).transpose(0, 1)  # (B*V, C, *patch)
                out = net(patches).reshape(b_count, -1, net.n_classes)  # (B, V, n_classes)
                outputs.append(out)
    finally:
        net.train(was_training)
    result = torch.cat(outputs, dim=1).transpose(1, 2).to(volume.device)  # (B, n_classes, V)
    if voxels is None:
        return result.reshape((b_count, net.n_classes) + shape)
    return result


# ---------------------------------------------------------------------------------------------
# the inferer
# ---------------------------------------------------------------------------------------------
class CentreVoxelInferer(Inferer):
    """Per-voxel logits of a centre-voxel classifier in one fully convolutional pass per block.

    Equal (up to ~1e-6 float rounding) to :func:`centre_voxel_per_patch` at every voxel: the
    input is reflect-padded by the receptive-field halo (``p // 2`` before, at most
    ``p - 1 - p // 2`` after) and run through the dilated rewrite of the net (module docstring).
    With ``block_size`` the output is computed block by block, each block's input cut (with its
    halo, reflect-padded at the volume border) straight from the volume, so memory stays bounded
    by the block; the blocks stitch exactly.

    Usable as a MONAI inferer: ``inferer(inputs, network)``. ``network`` (a
    :class:`CentreVoxelNet`) overrides the constructor's ``net``; rewrites are cached per
    network (they share its parameters, so training updates are seen). Only unpadded nets
    (``4_conv``, ``4_conv_ln``, ``4_conv_resnet_valid``, ``4_conv_resnet_valid_ln``,
    ``dilated_conv_2_layer``, ``dilated_conv_2_layer_16``, ``3_layer_8``) are accepted; padded
    ones raise ``ValueError``.

    Args:
        net: the classifier (optional when a network is passed at call time).
        block_size: output block per spatial axis (an int for all axes); ``None``: one block.
        device: where the blocks are computed (the network must live there); ``None``: the
            network's device. The result is returned on the input's device.

    Example:
        >>> from cseg_monai.networks import build_centre_voxel_net
        >>> net = build_centre_voxel_net("4_conv", 2, spatial_dims=3, patch_size=(8, 32, 32))
        >>> inferer = CentreVoxelInferer(net, block_size=(4, 8, 8))
        >>> x = torch.rand(1, 1, 6, 10, 10)
        >>> logits = inferer(x)
        >>> logits.shape
        torch.Size([1, 2, 6, 10, 10])
        >>> ref = centre_voxel_per_patch(net, x, voxels=[[0, 0, 0], [5, 9, 3]])
        >>> bool((logits[0, :, [0, 5], [0, 9], [0, 3]] - ref[0]).abs().max() < 1e-4)
        True
    """

    def __init__(
        self,
        net: CentreVoxelNet | None = None,
        block_size: int | Sequence[int] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if net is not None and not isinstance(net, CentreVoxelNet):
            raise TypeError(f"net must be a CentreVoxelNet, got {type(net).__name__}")
        if block_size is not None:
            sizes = (block_size,) if isinstance(block_size, int) else tuple(block_size)
            if not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in sizes):
                raise ValueError(f"block_size must be None, a positive int or positive ints, got {block_size!r}")
            if net is not None and len(sizes) not in (1, net.spatial_dims):
                n = net.spatial_dims
                raise ValueError(f"block_size {block_size!r} must have {n} entries for spatial_dims={n}")
            block_size = sizes
        self.net = net
        self.block_size: Ints | None = block_size
        self.device = None if device is None else torch.device(device)
        self._cache: dict[int, tuple[weakref.ref, DenseCentreVoxelNet]] = {}
        if net is not None:
            self.dense_net(net)  # validate up front (padded nets raise here)

    def dense_net(self, net: CentreVoxelNet) -> DenseCentreVoxelNet:
        """The (cached) dilated rewrite of ``net``."""
        if not isinstance(net, CentreVoxelNet):
            raise TypeError(f"network must be a CentreVoxelNet, got {type(net).__name__}")
        hit = self._cache.get(id(net))
        if hit is not None and hit[0]() is net:
            return hit[1]
        dense = dense_rewrite(net)
        self._cache = {k: v for k, v in self._cache.items() if v[0]() is not None}  # drop dead networks
        self._cache[id(net)] = (weakref.ref(net), dense)
        return dense

    def __call__(
        self, inputs: torch.Tensor, network: CentreVoxelNet | None = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Logits ``(B, n_classes, [Z,] Y, X)`` for ``inputs`` ``(B, in_channels, [Z,] Y, X)``."""
        if args or kwargs:
            raise TypeError(
                "CentreVoxelInferer passes only the image to the network; extra arguments are not supported"
            )
        net = network if network is not None else self.net
        if net is None:
            raise ValueError("no network: give one to CentreVoxelInferer(net) or at call time")
        dense = self.dense_net(net)
        n = dense.spatial_dims
        _check_volume(inputs, n, dense.in_channels)
        blocks = self.block_size
        if blocks is not None and len(blocks) not in (1, n):
            raise ValueError(f"block_size {blocks} must have {n} entries for spatial_dims={n}")
        shape = tuple(inputs.shape[2:])
        block = shape if blocks is None else (blocks * n if len(blocks) == 1 else blocks)
        net_device = _net_device(net)
        device = self.device if self.device is not None else net_device
        if device != net_device and not (device.type == net_device.type and device.index is None):
            raise ValueError(f"the network lives on {net_device}, not on the inferer's device {device}; move it first")
        dtype = _net_dtype(net)
        before = tuple(p // 2 for p in dense.patch_size)
        out = torch.empty((inputs.shape[0], dense.n_classes) + shape, dtype=dtype, device=inputs.device)
        with torch.no_grad():
            # the receptive field reaches p // 2 before and reach - p // 2 after each output voxel
            halo = tuple((h, r - h) for h, r in zip(before, dense.reach, strict=True))
            for piece in iter_blocks(shape, block, halo, clip=False):
                x = _gather_box(inputs, *zip(*piece.outer)).to(device=device, dtype=dtype)
                out[(slice(None), slice(None)) + piece.core_slices] = dense(x).to(inputs.device)
        return out
