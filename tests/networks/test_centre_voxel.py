"""Centre-voxel classifiers: shapes, gradients, determinism, anisotropy, validation, layer tables."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from cseg_monai.networks import (
    BACKBONES,
    CentreCrop,
    ConcatResidual,
    ConvBlock,
    ConvNeXtBlock,
    ConvNeXtCentreVoxelNet,
    DilatedConvNet,
    DropPath,
    FourConvNet,
    FourConvResNet,
    LayerNormChannelsFirst,
    LayerScale,
    Residual,
    ThreeLayerNet,
    build_centre_voxel_net,
    nominal_patch_size,
)

TINY = {"depths": (1, 1, 1, 1), "dims": (8, 16, 32, 64)}
NETS_32 = [name for name in BACKBONES if nominal_patch_size(name)[0] == 32]
# the module types a dense (fully convolutional) rewrite has to understand
ALLOWED = (
    nn.Conv2d, nn.Conv3d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool2d, nn.AvgPool3d,
    nn.BatchNorm2d, nn.BatchNorm3d, LayerNormChannelsFirst, LayerScale, DropPath,
    nn.LeakyReLU, nn.GELU, nn.Identity, nn.Sequential, ConvBlock, Residual, ConcatResidual, ConvNeXtBlock,
    CentreCrop,
)  # fmt: skip


def build(name: str, spatial_dims: int, **kwargs) -> nn.Module:
    extra = TINY if name == "convnext_tiny_3d" else {}
    torch.manual_seed(0)
    return build_centre_voxel_net(name, n_classes=3, spatial_dims=spatial_dims, **extra, **kwargs)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", BACKBONES)
def test_shape_backward_and_eval_determinism(name: str, spatial_dims: int) -> None:
    net = build(name, spatial_dims)
    patch = nominal_patch_size(name, spatial_dims)
    assert net.patch_size == patch
    x = torch.rand((2, 1) + patch)
    y = net.train()(x)
    assert y.shape == (2, 3) + (1,) * spatial_dims
    y.square().sum().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
    assert all(isinstance(m, ALLOWED) for m in net.backbone.modules())
    assert isinstance(net.head, nn.Conv2d if spatial_dims == 2 else nn.Conv3d)


@pytest.mark.parametrize("name", NETS_32)
def test_anisotropic_sstem_patch(name: str) -> None:
    net = build(name, 3, patch_size=(8, 32, 32)).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 1, 8, 32, 32))
    assert y.shape == (2, 3, 1, 1, 1)
    # Y and X follow the nominal plan; Z is downsampled less
    nominal = build(name, 3)
    assert net.strides[1:] == nominal.strides[1:]
    assert net.strides[0] < nominal.strides[0]
    assert net.receptive_field[1:] == nominal.receptive_field[1:]


def test_anisotropic_rule_details() -> None:
    net = build("4_conv", 3, patch_size=(8, 32, 32))
    convs = [m.kernel_size for m in net.backbone.modules() if isinstance(m, nn.Conv3d)]
    pools = [m.kernel_size for m in net.backbone.modules() if isinstance(m, (nn.MaxPool3d, nn.AvgPool3d))]
    # Z: 8 -c-> 6 -(no pool)-> 6 -c-> 4 -(no pool)-> 4 -c-> 2 -(conv in-plane)-> 2 -avgpool-> 1
    assert convs == [(3, 3, 3), (3, 3, 3), (3, 3, 3), (1, 3, 3)]
    assert pools == [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    assert net.head_kernel == (1, 1, 1) and net.receptive_field == (8, 30, 30)


def test_receptive_field_of_unpadded_net_is_exact() -> None:
    net = build("4_conv", 2).eval()
    assert net.receptive_field == (30, 30)  # the floors of the pools drop the last 2 rows/columns
    x = torch.rand(1, 1, 32, 32)
    x2 = x.clone()
    x2[..., 30:, :] = 5.0
    x2[..., :, 30:] = -5.0
    x3 = x.clone()
    x3[..., 29, 29] += 1.0
    with torch.no_grad():
        assert torch.equal(net(x), net(x2))
        assert not torch.equal(net(x), net(x3))


def _tables(doc: str) -> list[dict[str, tuple[str, int]]]:
    """Each 'Layer table' of a docstring as {layer: (channels, spatial)}."""
    row = re.compile(r"^\s+(input|backbone\.\d+|head)\s.*?\s(\d+|n_classes)\s+(\d+)\s*$")
    tables = []
    for chunk in doc.split("Layer table")[1:]:
        rows = {}
        for line in chunk.splitlines():
            m = row.match(line)
            if m:
                rows[m.group(1)] = (m.group(2), int(m.group(3)))
            elif rows and not line.strip():
                break
        tables.append(rows)
    return tables


def _check_table(net: nn.Module, table: dict[str, tuple[str, int]], x: torch.Tensor) -> None:
    shapes = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, key=f"backbone.{k}": shapes.__setitem__(key, o.shape))
        for k, layer in enumerate(net.backbone)
    ]
    hooks.append(net.head.register_forward_hook(lambda m, i, o: shapes.__setitem__("head", o.shape)))
    with torch.no_grad():
        net.eval()(x)
    for h in hooks:
        h.remove()
    shapes["input"] = x.shape
    assert set(table) == set(shapes), f"table rows {sorted(table)} != layers {sorted(shapes)}"
    for key, (channels, spatial) in table.items():
        c = net.n_classes if channels == "n_classes" else int(channels)
        assert shapes[key][1] == c, key
        assert set(shapes[key][2:]) == {spatial}, key


@pytest.mark.parametrize(
    "cls, index, name",
    [
        (FourConvNet, 0, "4_conv"),
        (FourConvNet, 0, "4_conv_ln"),
        (FourConvResNet, 0, "4_conv_resnet"),
        (FourConvResNet, 0, "4_conv_resnet_ln"),
        (DilatedConvNet, 0, "dilated_conv_2_layer"),
        (DilatedConvNet, 1, "dilated_conv_2_layer_16"),
        (ThreeLayerNet, 0, "3_layer_8"),
    ],
)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_docstring_layer_table_matches_shapes(cls, index: int, name: str, spatial_dims: int) -> None:
    net = build(name, spatial_dims)
    assert type(net) is cls
    _check_table(net, _tables(cls.__doc__)[index], torch.rand((1, 1) + net.patch_size))


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet50'; known: 4_conv, 4_conv_ln, .*convnext_tiny_3d"):
        build_centre_voxel_net("resnet50", 2)
    with pytest.raises(ValueError, match="unknown backbone"):
        nominal_patch_size("nope", 3)


@pytest.mark.parametrize(
    "name, patch, minimum",
    [
        ("4_conv", (2, 32, 32), r"\(3, 3, 3\)"),
        ("3_layer_8", (2, 2), r"\(3, 3\)"),
        ("convnext_tiny_3d", (32, 3, 32), r"\(4, 4, 4\)"),
    ],
)
def test_too_small_patch_gives_minimum(name: str, patch: tuple[int, ...], minimum: str) -> None:
    with pytest.raises(ValueError, match=rf"too small for '{name}'.*minimum patch {minimum}"):
        build(name, len(patch), patch_size=patch)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
        ({"n_classes": 0}, "n_classes must be a positive int"),
        ({"in_channels": 0}, "in_channels must be a positive int"),
        ({"patch_size": (32, 32)}, r"patch_size must be 3 ints for spatial_dims=3"),
        ({"patch_size": (32.0, 32, 32)}, r"patch_size must be 3 ints"),
        ({"norm": "group"}, r"\['norm'\] are fixed by the backbone name"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"name": "4_conv", "n_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_centre_voxel_net(**args)


def test_bad_class_options() -> None:
    with pytest.raises(ValueError, match="norm must be 'batch' or 'layer'"):
        FourConvNet(2, norm="group")
    with pytest.raises(ValueError, match="depths and dims must have 4 entries"):
        ConvNeXtCentreVoxelNet(2, depths=(1, 1, 1))
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\)"):
        ConvNeXtCentreVoxelNet(2, drop_path_rate=1.0, **TINY)


def test_in_channels_and_nominal_sizes() -> None:
    assert nominal_patch_size("dilated_conv_2_layer_16", 3) == (16, 16, 16)
    assert nominal_patch_size("3_layer_8", 2) == (8, 8)
    assert build("3_layer_8", 2, patch_size=np.array([8, 10])).patch_size == (8, 10)
    net = build("dilated_conv_2_layer", 2, in_channels=2).eval()
    assert net(torch.rand(1, 2, 32, 32)).shape == (1, 3, 1, 1)


def test_real_convnext_tiny_3d() -> None:
    torch.manual_seed(0)
    net = build_centre_voxel_net("convnext_tiny_3d", n_classes=2, spatial_dims=3)
    n_params = sum(p.numel() for p in net.parameters())
    # ConvNeXt-T is 28.6M with its 1000-class head (27.8M without); 3D kernels add ~3.5M
    assert 30.5e6 < n_params < 32e6, n_params
    (table,) = _tables(ConvNeXtCentreVoxelNet.__doc__)
    _check_table(net, table, torch.rand(1, 1, 32, 32, 32))
    assert net.head_kernel == (1, 1, 1)
