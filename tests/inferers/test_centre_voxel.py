"""Dense centre-voxel inference: equality with per-patch evaluation, blocks, refusals, validation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from monai.inferers import Inferer
from torch import nn

from cseg_monai.inferers import CentreVoxelInferer, centre_voxel_per_patch, dense_rewrite, reflect_indices
from cseg_monai.networks import LayerNormChannelsFirst, build_centre_voxel_net

UNPADDED = [
    "4_conv", "4_conv_ln", "4_conv_resnet_valid", "4_conv_resnet_valid_ln",
    "dilated_conv_2_layer", "dilated_conv_2_layer_16", "3_layer_8",
]  # fmt: skip
PADDED = ["4_conv_resnet", "4_conv_resnet_ln", "convnext_tiny_3d"]
TINY = {"depths": (1, 1, 1, 1), "dims": (8, 16, 32, 64)}

# (spatial_dims, patch_size or None for nominal, volume shape)
CASES = [
    (2, None, (37, 41)),
    (3, None, (10, 12, 12)),  # smaller than the 32^3 halo: repeated reflection
    (3, (8, 32, 32), (12, 20, 20)),  # ssTEM-like anisotropic patch
]


def randomised(name: str, spatial_dims: int, patch_size=None, n_classes: int = 3, seed: int = 0) -> nn.Module:
    """A net with random weights, random non-trivial BatchNorm statistics and LayerNorm affines, in eval mode."""
    torch.manual_seed(seed)
    extra = TINY if name == "convnext_tiny_3d" else {}
    net = build_centre_voxel_net(name, n_classes, spatial_dims=spatial_dims, patch_size=patch_size, **extra)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.3, 3.0)
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, LayerNormChannelsFirst)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
    return net.eval()


def sample_voxels(shape: tuple[int, ...], n: int = 50, seed: int = 1) -> torch.Tensor:
    """All corners, the centres of the faces' edges, and random voxels: ``(n, len(shape))``."""
    corners = [list(c) for c in np.ndindex(*(2,) * len(shape))]
    fixed = [[(s - 1) * c for s, c in zip(shape, corner)] for corner in corners]
    fixed += [[s // 2 if i == j else 0 for j, s in enumerate(shape)] for i in range(len(shape))]
    fixed += [[s - 1 if i == j else s // 2 for j, s in enumerate(shape)] for i in range(len(shape))]
    g = torch.Generator().manual_seed(seed)
    rand = torch.stack([torch.randint(0, s, (n - len(fixed),), generator=g) for s in shape], dim=1)
    return torch.cat([torch.tensor(fixed), rand])


def at(volume: torch.Tensor, voxels: torch.Tensor) -> torch.Tensor:
    """``(B, C, *S)`` -> ``(B, C, V)`` at the given voxels."""
    return volume[(slice(None), slice(None)) + tuple(voxels.T)]


def cases(names: list[str]) -> list[tuple[str, int, tuple[int, ...] | None, tuple[int, ...]]]:
    out = []
    for name in names:
        for dims, patch, shape in CASES:
            if patch is not None and name in ("3_layer_8", "dilated_conv_2_layer_16"):
                continue  # their nominal patches are smaller than 32 anyway
            if name.startswith("4_conv_resnet_valid") and dims == 3:
                patch = (5, 40, 40) if patch is None else (8, 102, 102)  # 102^3 per-patch references are slow
            out.append((name, dims, patch, shape))
    return out


@pytest.mark.parametrize("name, spatial_dims, patch, shape", cases(UNPADDED))
def test_dense_equals_per_patch(name: str, spatial_dims: int, patch, shape) -> None:
    net = randomised(name, spatial_dims, patch)
    x = torch.randn((2, 1) + shape, generator=torch.Generator().manual_seed(2))
    dense = CentreVoxelInferer(net)(x)
    assert dense.shape == (2, 3) + shape and dense.dtype == torch.float32
    voxels = sample_voxels(shape)
    ref = centre_voxel_per_patch(net, x, batch_size=64, voxels=voxels)
    assert ref.shape == (2, 3, len(voxels))
    assert ref.abs().max() > 0.05  # the logits are not trivially small
    assert (at(dense, voxels) - ref).abs().max() <= 1e-4
    # the comparison is sensitive to the alignment: one voxel off along X is clearly different
    shifted = voxels.clone()
    shifted[:, -1] = (shifted[:, -1] + 1) % shape[-1]
    assert (at(dense, shifted) - ref).abs().max() > 1e-3


@pytest.mark.parametrize(
    "name, spatial_dims, patch, shape, block",
    [
        ("4_conv", 3, (8, 32, 32), (12, 20, 20), (5, 7, 20)),
        ("dilated_conv_2_layer", 3, None, (10, 12, 12), 4),
        ("3_layer_8", 2, None, (37, 41), (16, 9)),
        ("4_conv_ln", 2, None, (37, 41), (37, 1)),
    ],
)
def test_blocks_stitch_exactly(name: str, spatial_dims: int, patch, shape, block) -> None:
    net = randomised(name, spatial_dims, patch)
    x = torch.randn((1, 1) + shape)
    whole = CentreVoxelInferer(net)(x)
    blocked = CentreVoxelInferer(net, block_size=block)(x)
    assert blocked.shape == whole.shape
    assert (blocked - whole).abs().max() <= 1e-5


def test_full_per_patch_matches_dense_everywhere_2d() -> None:
    net = randomised("dilated_conv_2_layer_16", 2)
    x = torch.randn(1, 1, 9, 11)
    ref = centre_voxel_per_patch(net, x, batch_size=37)
    assert ref.shape == (1, 3, 9, 11)
    assert (CentreVoxelInferer(net, block_size=4)(x) - ref).abs().max() <= 1e-4


def test_centre_is_index_p_half() -> None:
    """A one-voxel impulse at voxel v only reaches outputs whose patch (v - p//2 ...) contains it."""
    net = randomised("3_layer_8", 2)
    x = torch.zeros(1, 1, 30, 30)
    x[0, 0, 15, 15] = 100.0
    y = CentreVoxelInferer(net)(x)
    changed = (y - y[:, :, :1, :1]).abs().amax(1)[0] > 1e-4
    rows = torch.nonzero(changed.any(1)).flatten()
    # patch of output voxel i covers i - 4 .. i + 3, so voxel 15 is seen by i = 12 .. 19
    assert rows.min() == 12 and rows.max() == 19


def test_reflect_indices_match_numpy_reflect() -> None:
    for n in (1, 2, 3, 5):
        values = np.arange(n)
        for before, after in ((0, 0), (2, 3), (7, 11)):
            expected = np.pad(values, (before, after), mode="reflect") if n > 1 else np.zeros(n + before + after)
            assert reflect_indices(n, -before, n + after).tolist() == expected.tolist()


def test_monai_inferer_with_network_argument_and_cache() -> None:
    net = randomised("3_layer_8", 3, n_classes=2)
    inferer = CentreVoxelInferer(block_size=5)
    assert isinstance(inferer, Inferer)
    x = torch.randn(1, 1, 6, 7, 8)
    y = inferer(x, net)
    assert y.shape == (1, 2, 6, 7, 8)
    dense = inferer.dense_net(net)
    assert inferer.dense_net(net) is dense  # cached per network
    # parameters are shared: a weight update is seen without rebuilding
    with torch.no_grad():
        net.head.bias += 1.0
    assert torch.allclose(inferer(x, net), y + 1.0, atol=1e-5)
    other = randomised("3_layer_8", 3, n_classes=2, seed=5)
    assert not torch.allclose(inferer(x, other), inferer(x, net))


def test_training_mode_net_uses_running_stats_and_is_left_untouched() -> None:
    net = randomised("dilated_conv_2_layer_16", 3)
    x = torch.randn(1, 1, 5, 6, 7)
    expected = CentreVoxelInferer(net)(x)
    net.train()
    stats = [b.clone() for b in net.buffers()]
    assert torch.allclose(CentreVoxelInferer(net)(x), expected, atol=1e-6)
    ref = centre_voxel_per_patch(net, x, voxels=[[0, 0, 0], [4, 5, 6]])
    assert net.training  # the per-patch reference restores the mode
    assert all(torch.equal(a, b) for a, b in zip(stats, net.buffers(), strict=True))
    assert (at(expected, torch.tensor([[0, 0, 0], [4, 5, 6]])) - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("name", PADDED)
def test_padded_nets_are_refused_but_per_patch_works(name: str) -> None:
    net = randomised(name, 2)
    message = re.escape(f"{name!r} has padded (or ceil_mode) layers")
    with pytest.raises(ValueError, match=message + r".*centre_voxel_per_patch"):
        CentreVoxelInferer(net)
    with pytest.raises(ValueError, match=message):
        CentreVoxelInferer()(torch.rand(1, 1, 8, 8), net)
    ref = centre_voxel_per_patch(net, torch.rand(1, 1, 6, 5), voxels=[[0, 0], [5, 4]])
    assert ref.shape == (1, 3, 2) and torch.isfinite(ref).all()


def test_unknown_module_type_is_named() -> None:
    net = randomised("3_layer_8", 2)
    net.backbone[1].act = nn.Softplus()
    with pytest.raises(NotImplementedError, match=r"backbone\.1\.act: module type Softplus is not supported"):
        dense_rewrite(net)
    with pytest.raises(TypeError, match="expected a CentreVoxelNet, got Sequential"):
        dense_rewrite(nn.Sequential(nn.Conv2d(1, 1, 3)))


def test_bad_inputs() -> None:
    net = randomised("3_layer_8", 3)
    inferer = CentreVoxelInferer(net)
    message = "inputs must be a 5-D (B, C, Z, Y, X) tensor for a net with spatial_dims=3, got shape (1, 8, 8)"
    with pytest.raises(ValueError, match=re.escape(message)):
        inferer(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match=re.escape("inputs have 2 channels, the net expects in_channels=1")):
        inferer(torch.rand(1, 2, 4, 4, 4))
    with pytest.raises(ValueError, match=re.escape("inputs must not be empty, got shape (1, 1, 0, 4, 4)")):
        inferer(torch.rand(1, 1, 0, 4, 4))
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor, got ndarray"):
        inferer(np.zeros((1, 1, 4, 4, 4)))
    with pytest.raises(ValueError, match=re.escape("inputs must be a 4-D (B, C, Y, X) tensor")):
        centre_voxel_per_patch(randomised("3_layer_8", 2), torch.rand(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match=re.escape("voxels must be integer coordinates of shape (V, 3), got (2, 2)")):
        centre_voxel_per_patch(net, torch.rand(1, 1, 4, 4, 4), voxels=[[0, 0], [1, 1]])
    with pytest.raises(ValueError, match=re.escape("voxels must lie inside the spatial shape (4, 4, 4)")):
        centre_voxel_per_patch(net, torch.rand(1, 1, 4, 4, 4), voxels=[[0, 0, 4]])
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        centre_voxel_per_patch(net, torch.rand(1, 1, 4, 4, 4), batch_size=0)
    message = "block_size must be None, a positive int or positive ints, got (4, 0, 4)"
    with pytest.raises(ValueError, match=re.escape(message)):
        CentreVoxelInferer(net, block_size=(4, 0, 4))
    with pytest.raises(ValueError, match=re.escape("block_size (4, 4) must have 3 entries for spatial_dims=3")):
        CentreVoxelInferer(net, block_size=(4, 4))
    with pytest.raises(ValueError, match=re.escape("block_size (4, 4) must have 3 entries for spatial_dims=3")):
        CentreVoxelInferer(block_size=(4, 4))(torch.rand(1, 1, 4, 4, 4), net)
    with pytest.raises(ValueError, match="no network: give one to CentreVoxelInferer"):
        CentreVoxelInferer()(torch.rand(1, 1, 4, 4, 4))
    with pytest.raises(TypeError, match="network must be a CentreVoxelNet, got Conv3d"):
        CentreVoxelInferer()(torch.rand(1, 1, 4, 4, 4), nn.Conv3d(1, 1, 1))
    with pytest.raises(TypeError, match="extra arguments are not supported"):
        inferer(torch.rand(1, 1, 4, 4, 4), net, 3)
    with pytest.raises(ValueError, match=re.escape("the network lives on cpu, not on the inferer's device meta")):
        CentreVoxelInferer(net, device="meta")(torch.rand(1, 1, 4, 4, 4))
