"""The registry of centre-voxel nets by name: :func:`build_centre_voxel_net`, :func:`nominal_patch_size`.

Example:
    >>> build_centre_voxel_net("4_conv", 2, spatial_dims=2).patch_size
    (32, 32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from cseg_monai.networks.centre_voxel import CentreVoxelNet, DilatedConvNet, FourConvNet, FourConvResNet, ThreeLayerNet
from cseg_monai.networks.convnext3d import ConvNeXtCentreVoxelNet

__all__ = ["BACKBONES", "build_centre_voxel_net", "nominal_patch_size"]

# name -> (class, fixed keyword arguments, nominal extent per axis)
_REGISTRY: dict[str, tuple[type[CentreVoxelNet], dict[str, Any], int]] = {
    "4_conv": (FourConvNet, {"norm": "batch"}, 32),
    "4_conv_ln": (FourConvNet, {"norm": "layer"}, 32),
    "4_conv_resnet": (FourConvResNet, {"norm": "batch"}, 32),
    "4_conv_resnet_ln": (FourConvResNet, {"norm": "layer"}, 32),
    "4_conv_resnet_valid": (FourConvResNet, {"norm": "batch", "padding": "valid"}, 102),
    "4_conv_resnet_valid_ln": (FourConvResNet, {"norm": "layer", "padding": "valid"}, 102),
    "dilated_conv_2_layer": (DilatedConvNet, {"pooling": True}, 32),
    "dilated_conv_2_layer_16": (DilatedConvNet, {"pooling": False}, 16),
    "3_layer_8": (ThreeLayerNet, {}, 8),
    "convnext_tiny_3d": (ConvNeXtCentreVoxelNet, {}, 32),
}

#: the known backbone names, in registry order.
BACKBONES: tuple[str, ...] = tuple(_REGISTRY)


def _lookup(name: str) -> tuple[type[CentreVoxelNet], dict[str, Any], int]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return _REGISTRY[name]


def nominal_patch_size(name: str, spatial_dims: int = 3) -> tuple[int, ...]:
    """The isotropic patch size a backbone is designed for, e.g. ``(32, 32, 32)``.

    Example:
        >>> nominal_patch_size("dilated_conv_2_layer_16", 2)
        (16, 16)
    """
    _, _, extent = _lookup(name)
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return (extent,) * spatial_dims


def build_centre_voxel_net(
    name: str,
    n_classes: int,
    spatial_dims: int = 3,
    in_channels: int = 1,
    patch_size: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the centre-voxel classifier ``name`` (one of :data:`BACKBONES`).

    Args:
        name: backbone name.
        n_classes: output channels.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        patch_size: input patch; ``None`` for :func:`nominal_patch_size`.
        **kwargs: extra options of the class (e.g. ``depths``/``dims`` for ConvNeXt).

    Returns:
        A :class:`CentreVoxelNet` mapping ``(B, in_channels, *patch_size)`` to
        ``(B, n_classes, 1, 1[, 1])``.

    Raises:
        ValueError: unknown name (the message lists the known ones), bad ``spatial_dims``,
            ``n_classes`` or ``patch_size`` (a too small patch: the message gives the minimum).

    Example:
        >>> build_centre_voxel_net("4_conv", 2, spatial_dims=2).patch_size
        (32, 32)
    """
    cls, fixed, _ = _lookup(name)
    clash = set(fixed) & set(kwargs)
    if clash:
        raise ValueError(f"{sorted(clash)} are fixed by the backbone name {name!r}")
    return cls(n_classes, spatial_dims, in_channels, patch_size, **fixed, **kwargs)
