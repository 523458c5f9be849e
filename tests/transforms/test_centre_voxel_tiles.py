"""Tiles of unpadded centre-voxel nets: the grid output equals the per-patch prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cseg_monai.inferers import centre_voxel_per_patch
from cseg_monai.networks import build_centre_voxel_net
from cseg_monai.transforms import CentreVoxelGridd, CentreVoxelTiled, RandCentreVoxelTiled, tile_size


@pytest.mark.parametrize(
    "name,dims,patch",
    [("4_conv_resnet_valid", 2, None), ("4_conv", 2, None), ("dilated_conv_2_layer", 3, (8, 32, 32))],
)
def test_random_tile_grid_equals_per_patch_prediction_at_the_labelled_voxels(name, dims, patch):
    torch.manual_seed(0)
    net = build_centre_voxel_net(name, 6, spatial_dims=dims, patch_size=patch).eval()
    shape = (48, 56) if dims == 2 else (10, 40, 44)
    image = torch.rand((1,) + shape)
    label = torch.randint(0, 6, (1,) + shape)
    label[0, 0] = 255  # unlabelled row/plane
    t = RandCentreVoxelTiled("image", patch_size=net.patch_size, strides=net.strides, grid_size=3, num_samples=3)
    t.set_random_state(1)
    tiles = t({"image": image, "label": label})
    for tile in tiles:
        grid = CentreVoxelGridd("label", net.patch_size, net.strides)(tile)["label"]
        with torch.no_grad():
            out = net(tile["image"][None])[0]
        assert tuple(out.shape[1:]) == tuple(grid.shape[1:]) == (3,) * dims
        # every grid point: the voxel it predicts in volume coordinates, if inside the volume
        start = tile["tile_start"].tolist()
        coords, where = [], []
        for j in np.ndindex(*(3,) * dims):
            v = [a + p // 2 + s * k for a, p, s, k in zip(start, net.patch_size, net.strides, j)]
            if all(0 <= c < n for c, n in zip(v, shape)):
                coords.append(v)
                where.append(j)
                assert grid[(0,) + j] == label[(0,) + tuple(v)]
            else:
                assert grid[(0,) + j] == 255  # outside the volume: ignored
        assert coords, "the drawn voxel must be inside"
        ref = centre_voxel_per_patch(net, image[None], voxels=coords)[0]
        got = torch.stack([out[(slice(None),) + j] for j in where], dim=1)
        assert (got - ref).abs().max() <= 1e-4


def test_class_balanced_draws_rare_classes_and_never_ignored_voxels():
    label = torch.zeros(1, 64, 64, dtype=torch.long)
    label[0, 10, 10] = 4  # one synapse voxel
    label[0, 40:] = 255
    t = RandCentreVoxelTiled("image", patch_size=(9, 9), strides=(2, 2), grid_size=1, num_samples=200)
    t.set_random_state(0)
    tiles = t({"image": torch.rand(1, 64, 64), "label": label})
    centres = [CentreVoxelGridd("label", (9, 9), (2, 2))(x)["label"].item() for x in tiles]
    assert 255 not in centres
    assert 60 < centres.count(4) < 140  # half of the draws pick the rare class


def test_whole_volume_tile_covers_every_stride_voxel():
    image = torch.arange(70, dtype=torch.float32).reshape(1, 7, 10)
    label = torch.arange(70).reshape(1, 7, 10) % 6
    out = CentreVoxelTiled("image", patch_size=(5, 5), strides=(3, 3))({"image": image, "label": label})
    grid = CentreVoxelGridd("label", (5, 5), (3, 3))(out)["label"]
    assert torch.equal(grid[0], label[0, ::3, ::3])
    assert out["image"][0, 2, 2] == image[0, 0, 0]  # centre of grid point 0 is voxel (0, 0)
    assert out["image"][0, 1, 2] == image[0, 1, 0]  # reflect padding


def test_bad_inputs_are_named():
    t = RandCentreVoxelTiled("image", patch_size=(9, 9), strides=(2, 2))
    with pytest.raises(ValueError, match="outside"):
        t({"image": torch.rand(1, 20, 20), "label": torch.full((1, 20, 20), 7)})
    with pytest.raises(ValueError, match="no labelled voxel"):
        t({"image": torch.rand(1, 20, 20), "label": torch.full((1, 20, 20), 255)})
    with pytest.raises(ValueError, match="must be"):
        t({"image": torch.rand(1, 20, 21), "label": torch.zeros(1, 20, 20)})
    with pytest.raises(ValueError, match="strides"):
        RandCentreVoxelTiled("image", patch_size=(9, 9), strides=(2, 0))
    with pytest.raises(ValueError, match="tile size"):
        CentreVoxelGridd("label", (9, 9), (2, 2))({"label": torch.zeros(1, 10, 10)})
    assert tile_size((9,), (2,), (4,)) == (15,)


def test_shifted_validation_tiles_cover_other_voxels_and_batch():
    label = torch.arange(70).reshape(1, 7, 10) % 6
    t = CentreVoxelTiled("image", patch_size=(5, 5), strides=(3, 3), shifts=[[0, 0], [1, 2]])
    tiles = t({"image": torch.rand(1, 7, 10), "label": label})
    grids = [CentreVoxelGridd("label", (5, 5), (3, 3))(x)["label"] for x in tiles]
    assert grids[0].shape == grids[1].shape == (1, 2, 3)  # same size: they batch together
    assert torch.equal(grids[1][0], label[0, 1::3, 2::3][:2, :3])
    with pytest.raises(ValueError, match="shifts"):
        CentreVoxelTiled("image", patch_size=(5, 5), strides=(3, 3), shifts=[[3, 0]])
