"""D-LinkNet: the layer table's shapes, gradients, TorchScript, the centre and decoder blocks, bad sizes."""

from __future__ import annotations

import pytest
import torch

from cseg_monai.networks import DLinkNet
from cseg_monai.networks.dlinknet import DilatedCentre, LinkNetDecoder


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return DLinkNet()


def test_shapes_follow_the_layer_table(net):
    x = torch.rand(2, 1, 64, 96)
    seen = {}
    hooks = [getattr(net, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape)))
             for name in ("stem", "encoder1", "encoder2", "encoder3", "encoder4", "centre", "decoder4", "decoder1")]  # fmt: skip
    net.eval()
    with torch.no_grad():
        out = net(x)
    for h in hooks:
        h.remove()
    assert tuple(out.shape) == (2, 1, 64, 96)
    assert seen["stem"] == seen["encoder1"] == (2, 64, 16, 24)
    assert seen["encoder2"] == (2, 128, 8, 12) and seen["encoder3"] == (2, 256, 4, 6) and seen["encoder4"] == seen["centre"] == (2, 512, 2, 3)
    assert seen["decoder4"] == (2, 256, 4, 6) and seen["decoder1"] == (2, 64, 32, 48)
    assert 21e6 < sum(p.numel() for p in net.parameters()) < 35e6  # ResNet-34 (21.3 M) + centre + decoders


def test_backward_reaches_every_parameter(net):
    net.train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(torch.rand(2, 1, 32, 32)), torch.rand(2, 1, 32, 32))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_torchscript_gives_the_same_output(net):
    net.eval()
    scripted = torch.jit.script(net)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-5)


def test_centre_sums_the_cascade_and_the_decoder_doubles_the_size():
    centre = DilatedCentre(2, dilations=(1,))
    with torch.no_grad():
        centre.convs[0].weight.zero_()
        centre.convs[0].bias.fill_(1.0)
    x = torch.zeros(1, 2, 4, 4)
    assert torch.equal(centre(x), torch.ones(1, 2, 4, 4))  # x + ReLU(conv(x)) = 0 + 1
    assert LinkNetDecoder(16, 8)(torch.rand(1, 16, 3, 5)).shape == (1, 8, 6, 10)


def test_a_size_that_does_not_fit_names_the_nearest(net):
    with pytest.raises(ValueError, match=r"nearest valid size is \(64, 96\)"):
        net(torch.rand(1, 1, 70, 100))
    with pytest.raises(ValueError, match="channels"):
        DLinkNet(in_channels=0)


def test_the_light_variant_the_axon_bundle_ships():
    light = DLinkNet(encoder="resnet18", width=32).eval()
    assert sum(p.numel() for p in light.parameters()) < 6e6  # 5.3 M: 10.5 MB in float16
    with torch.no_grad():
        assert light(torch.rand(1, 1, 64, 32)).shape == (1, 1, 64, 32)
    scripted = torch.jit.script(light)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(scripted(x), light(x), atol=1e-5)
    with pytest.raises(ValueError, match="encoder"):
        DLinkNet(encoder="resnet50")
    with pytest.raises(ValueError, match="width"):
        DLinkNet(width=20)
