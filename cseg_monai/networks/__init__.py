"""Centre-voxel classifiers (2D/3D): backbone + convolutional head, built from plain torch modules.

Build one by name::

    >>> from cseg_monai.networks import build_centre_voxel_net, nominal_patch_size
    >>> net = build_centre_voxel_net("3_layer_8", n_classes=2, spatial_dims=3).eval()
    >>> nominal_patch_size("3_layer_8", 3)
    (8, 8, 8)
    >>> tuple(net(torch.rand(1, 1, 8, 8, 8)).shape)
    (1, 2, 1, 1, 1)

See :mod:`cseg_monai.networks.centre_voxel` for the per-axis rule used for anisotropic patches.
"""

from __future__ import annotations

import torch  # noqa: F401  (used by the doctest above)

from cseg_monai.networks.blocks import (
    CentreCrop,
    ConcatResidual,
    ConvBlock,
    DropPath,
    LayerNormChannelsFirst,
    LayerScale,
    Residual,
)
from cseg_monai.networks.centre_voxel import (
    CentreVoxelNet,
    DilatedConvNet,
    FourConvNet,
    FourConvResNet,
    PatchPlanner,
    ThreeLayerNet,
)
from cseg_monai.networks.convnext3d import ConvNeXtBlock, ConvNeXtCentreVoxelNet
from cseg_monai.networks.dlinknet import DLinkNet
from cseg_monai.networks.pixpro import PixPro, pixel_propagation
from cseg_monai.networks.pretrained import backbone_meta, backbone_of, export_backbone, load_pretrained_backbone, unet_encoder
from cseg_monai.networks.pretraining import (
    CentreVoxelVAE,
    build_centre_region_regressor,
    centre_region_size,
    reparameterise,
)
from cseg_monai.networks.registry import BACKBONES, build_centre_voxel_net, nominal_patch_size
from cseg_monai.networks.res_unet import ResUNet3D, ResUNetPlus3D
from cseg_monai.networks.unet3d import UNet3D

__all__ = [
    "UNet3D",
    "DLinkNet",
    "ResUNet3D",
    "ResUNetPlus3D",
    "PixPro",
    "pixel_propagation",
    "BACKBONES",
    "build_centre_voxel_net",
    "nominal_patch_size",
    "CentreVoxelNet",
    "FourConvNet",
    "FourConvResNet",
    "DilatedConvNet",
    "ThreeLayerNet",
    "ConvNeXtCentreVoxelNet",
    "ConvNeXtBlock",
    "PatchPlanner",
    "ConvBlock",
    "LayerNormChannelsFirst",
    "LayerScale",
    "DropPath",
    "Residual",
    "ConcatResidual",
    "CentreCrop",
    "CentreVoxelVAE",
    "build_centre_region_regressor",
    "centre_region_size",
    "reparameterise",
    "backbone_meta",
    "backbone_of",
    "unet_encoder",
    "export_backbone",
    "load_pretrained_backbone",
]
