"""PixPro: the pixel-propagation module by hand, the momentum target, and an encoder that moves to the membrane UNet."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from cseg_monai.networks import PixPro, backbone_of, load_pretrained_backbone, pixel_propagation
from cseg_monai.networks.pretrained import export_backbone


def _unet(out_channels: int = 1) -> UNet:
    return UNet(2, 1, out_channels, (8, 16, 32), (2, 2), num_res_units=1, norm="batch")


def test_pixel_propagation_by_hand():
    x = torch.tensor([[[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]]])  # three pixels: e_y, e_x and their diagonal
    values = torch.tensor([[[[1.0, 10.0, 100.0]]]])
    # weights: cos^2 clipped at 0: e_y.e_x = 0, e_y.diag = 1/sqrt2 -> 0.5
    expected = [1 + 0.5 * 100, 10 + 0.5 * 100, 0.5 * 1 + 0.5 * 10 + 100]
    assert pixel_propagation(x, values, sharpness=2.0).flatten().tolist() == pytest.approx(expected)


def test_momentum_target_follows_the_online_encoder_and_gets_no_gradient():
    net = PixPro(_unet(), projection_dim=8, hidden_dim=16, momentum=0.9)
    online, target = next(net.backbone.parameters()), next(net.target_backbone.parameters())
    assert torch.equal(online, target) and not target.requires_grad
    with torch.no_grad():
        online.add_(1.0)
    before = target.clone()
    net.train()
    out = net(torch.rand(2, 2, 32, 32))
    assert torch.allclose(target, 0.9 * before + 0.1 * online), "one EMA step per training forward"
    sum(o.sum() for o in out[:2] + out[4:6]).backward()
    assert online.grad is not None and target.grad is None
    assert all(o.grad_fn is None for o in out[2:4] + out[6:]), "targets carry no gradient"


def test_the_online_encoder_loads_into_the_membrane_unet(tmp_path):
    net = PixPro(_unet(), projection_dim=8, hidden_dim=16)
    path = export_backbone(net, tmp_path / "pixpro.pt", {"pretext": "pixpro"})
    target = load_pretrained_backbone(_unet(2), path)
    assert all(torch.equal(v, backbone_of(target).state_dict()[k]) for k, v in net.backbone.state_dict().items())


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="encoder of a MONAI UNet"):
        PixPro(torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        PixPro(_unet(), momentum=1.0)
    with pytest.raises(ValueError, match=r"two 1-channel views side by side: \(B, 2, \*spatial\)"):
        PixPro(_unet())(torch.rand(2, 1, 32, 32))
