"""Dense centre-voxel inference in blocks equals the whole-volume dense inferer, TTA and borders included."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from cseg_monai.common.tiling import iter_blocks, reflect_indices
from cseg_monai.inferers import CentreVoxelInferer, DihedralTTAInferer
from cseg_monai.inferers.block_centre_voxel import BlockCentreVoxel
from cseg_monai.networks import build_centre_voxel_net


def _reflected(volume: torch.Tensor, box) -> torch.Tensor:
    return volume[np.ix_(*[reflect_indices(n, a, b) for (a, b), n in zip(box, volume.shape)])]


def _blockwise(volume, blocks: BlockCentreVoxel, block_shape, net):
    out = None
    for b in iter_blocks(tuple(volume.shape), block_shape, halo=0):
        box = blocks.input_box(b.core)
        part = blocks(_reflected(volume, box), box, b.core, net)
        if out is None:
            out = torch.full((part.shape[0],) + tuple(volume.shape), float("nan"))
        out[(slice(None),) + b.core_slices] = part
    return out


@pytest.mark.parametrize(
    ("name", "dims", "patch", "shape", "n_transforms", "block"),
    [
        ("4_conv_resnet_valid", 2, (32, 32), (3, 45, 38), 8, (1, 20, 16)),  # the organelle bundle's net, slice by slice
        ("4_conv", 3, (8, 32, 32), (9, 30, 27), 2, (4, 13, 30)),  # a 3D net, blocks thinner than the halo
    ],
)
def test_equals_whole_volume_dense_inference(name, dims, patch, shape, n_transforms, block):
    torch.manual_seed(0)
    net = build_centre_voxel_net(name, 3, spatial_dims=dims, patch_size=patch).eval()
    volume = torch.rand(shape)
    tta = DihedralTTAInferer(CentreVoxelInferer(block_size=64), n_transforms=n_transforms, activation="softmax")
    if dims == 2:
        ref = torch.stack([tta(volume[z][None, None], net)[0] for z in range(shape[0])], dim=1)
    else:
        ref = tta(volume[None, None], net)[0]
    blocks = BlockCentreVoxel(shape, net, n_transforms=n_transforms)
    blocks = pickle.loads(pickle.dumps(blocks))  # what a Dask worker gets
    out = _blockwise(volume, blocks, block, net)
    assert torch.allclose(out, ref, atol=1e-5), float((out - ref).abs().max())


def test_settings_and_coverage_are_checked():
    net = build_centre_voxel_net("4_conv", 2, spatial_dims=2, patch_size=(32, 32))
    with pytest.raises(TypeError, match="CentreVoxelNet"):
        BlockCentreVoxel((64, 64), torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="padded"):
        BlockCentreVoxel((64, 64), build_centre_voxel_net("4_conv_resnet", 2, spatial_dims=2, patch_size=(32, 32)))
    with pytest.raises(ValueError, match="n_transforms"):
        BlockCentreVoxel((64, 64), net, n_transforms=3)
    blocks = BlockCentreVoxel((64, 64), net)
    core = ((0, 8), (0, 8))
    with pytest.raises(ValueError, match="does not cover"):
        blocks(np.zeros((8, 8), np.float32), core, core, net)
    with pytest.raises(ValueError, match="inside the volume"):
        blocks.input_box(((0, 65), (0, 8)))
