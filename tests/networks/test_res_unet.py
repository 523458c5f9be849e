"""Residual anisotropic U-Nets (res_unet, res_unet_plus): shapes, gradients, TorchScript, receptive fields, shape checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cseg_monai.networks.res_unet import (
    DilatedInPlaneBlock,
    ResBlock3D,
    ResUNet3D,
    ResUNetPlus3D,
    check_input_shape,
    nearest_valid_shape,
)

SMALL = (4, 8, 8, 8, 8)


@pytest.mark.parametrize("cls", [ResUNet3D, ResUNetPlus3D])
@pytest.mark.parametrize("shape", [(2, 16, 16), (6, 32, 48)])
def test_output_shape_equals_input_and_every_parameter_learns(cls, shape):
    torch.manual_seed(0)
    net = cls(in_channels=2, out_channels=3, filters=SMALL)
    x = torch.rand(2, 2, *shape)
    y = net(x)
    assert tuple(y.shape) == (2, 3, *shape)
    y.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing


@pytest.mark.parametrize("cls", [ResUNet3D, ResUNetPlus3D])
def test_torchscript_computes_what_eager_does(cls):
    torch.manual_seed(1)
    net = cls(filters=SMALL).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(1, 1, 4, 32, 16)
    assert torch.allclose(scripted(x), net(x), atol=1e-5)
    with pytest.raises(Exception, match=r"Z even and Y, X multiples of 16, got shape \(1, 1, 3, 32, 16\)"):
        scripted(torch.rand(1, 1, 3, 32, 16))


def test_default_widths_and_levels_follow_the_specification():
    net = ResUNet3D()
    encoders = [m.project[0] for m in net.encoders] + [net.centre.project[0]]
    assert [c.out_channels for c in encoders] == [32, 64, 96, 128, 160]
    assert [tuple(c.kernel_size) for c in encoders] == [(1, 3, 3)] * 3 + [(3, 3, 3)] * 2
    assert [tuple(p.kernel_size) for p in net.pools] == [(1, 2, 2)] * 3 + [(2, 2, 2)]
    assert net.head.out_channels == 1
    plus = ResUNetPlus3D()
    assert [m.project[0].out_channels for m in plus.encoders] + [plus.centre.project[0].out_channels] == [32, 64, 64, 96, 96]
    assert isinstance(plus.centre.out, nn.ELU) and isinstance(net.centre.out, nn.ReLU)
    branches = plus.encoders[0].branches
    assert [[c.dilation for c in b if isinstance(c, nn.Conv3d)] for b in branches] == [
        [(1, 1, 1)], [(1, 1, 1), (1, 2, 2)], [(1, 1, 1), (1, 2, 2), (1, 4, 4)], [(1, 1, 1), (1, 2, 2), (1, 4, 4), (1, 8, 8)]
    ]
    # Kaiming (fan-out) initialisation: the weights' spread is sqrt(2 / fan_out)
    conv = net.centre.body[0]
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1] * conv.kernel_size[2]
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)


def test_skips_are_added_not_concatenated_and_the_centre_sees_z_halved_yx_over_16():
    net = ResUNet3D(filters=SMALL).eval()
    seen = {}
    net.centre.register_forward_hook(lambda m, i, o: seen.update(centre=tuple(o.shape)))
    net(torch.rand(1, 1, 4, 32, 64))
    assert seen["centre"] == (1, 8, 2, 2, 4)
    # the decoder's 1x1 reduction takes only the up-sampled path's channels: the skip is added after it
    assert [d.reduce[0].in_channels for d in net.decoders] == [8, 8, 8, 8]
    assert [d.reduce[0].out_channels for d in net.decoders] == [8, 8, 8, 4]


def test_res_block_is_the_residual_of_its_first_conv():
    torch.manual_seed(2)
    block = ResBlock3D(2, 3, (1, 3, 3)).eval()
    x = torch.rand(1, 2, 2, 9, 9)
    r = torch.relu(block.project[1](block.project[0](x)))
    expected = torch.relu(r + block.body(r))
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_dilated_block_stays_in_plane_with_a_receptive_field_of_16_pixels():
    torch.manual_seed(3)
    block = DilatedInPlaneBlock(1, 2).eval()
    x = torch.rand(1, 1, 3, 41, 41, requires_grad=True)
    block(x)[0, 0, 1, 20, 20].backward()
    influence = (x.grad[0, 0].abs() > 0).nonzero()
    assert set(influence[:, 0].tolist()) == {1}  # no mixing of sections
    # projection (1) + the longest branch (1 + 2 + 4 + 8): 16 pixels each way
    assert influence[:, 1].min().item() == 4 and influence[:, 1].max().item() == 36


def test_input_shapes_are_checked_with_the_nearest_valid_shape():
    assert nearest_valid_shape((31, 204, 204)) == (32, 208, 208)
    assert nearest_valid_shape((30, 200, 199)) == (30, 208, 192)
    assert check_input_shape((18, 160, 160)) == (18, 160, 160)
    with pytest.raises(ValueError, match=r"ResUNetPlus3D: input shape \(31, 204, 204\).*nearest valid shape is \(32, 208, 208\)"):
        ResUNetPlus3D(input_shape=(31, 204, 204))
    with pytest.raises(ValueError, match="3 positive sizes"):
        check_input_shape((16, 16))
    with pytest.raises(ValueError, match="filters must be 5"):
        ResUNet3D(filters=(8, 16))
    with pytest.raises(ValueError, match="in_channels and out_channels"):
        ResUNet3D(in_channels=0)
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 16, 16\)"):
        ResUNet3D(filters=SMALL)(torch.rand(1, 1, 16, 16))
