"""Pretrained backbones: export, load, freeze; a file that does not fit is refused with its keys named."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from cseg_monai.networks import build_centre_region_regressor, build_centre_voxel_net, export_backbone, load_pretrained_backbone


def test_round_trip_moves_exactly_the_backbone(tmp_path):
    pretext = build_centre_region_regressor("4_conv", radius=1, spatial_dims=2)
    path = export_backbone(pretext, tmp_path / "b.pt", {"pretext": "centre_region"})
    content = torch.load(path, weights_only=True)
    assert content["meta"]["net"] == "4_conv" and content["meta"]["patch_size"] == [32, 32] and content["meta"]["pretext"] == "centre_region"
    net = build_centre_voxel_net("4_conv", 6, spatial_dims=2)
    head_before = {k: v.clone() for k, v in net.head.state_dict().items()}
    load_pretrained_backbone(net, path)
    for k, v in pretext.backbone.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[k], v)
    assert all(torch.equal(head_before[k], v) for k, v in net.head.state_dict().items()), "the head keeps its own weights"
    assert load_pretrained_backbone(net, None) is net


def test_frozen_backbone_gets_no_gradient_and_keeps_its_batch_norm_statistics(tmp_path):
    path = export_backbone(build_centre_region_regressor("4_conv", radius=0, spatial_dims=2), tmp_path / "b.pt")
    net = load_pretrained_backbone(build_centre_voxel_net("4_conv", 2, spatial_dims=2), path, freeze=True)
    stats = {k: v.clone() for k, v in net.backbone.state_dict().items() if "running" in k}
    net.train()
    out = net(torch.rand(4, 1, 32, 32) * 5 + 3)
    out.sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(p.grad is not None for p in net.head.parameters())
    assert all(torch.equal(stats[k], net.backbone.state_dict()[k]) for k in stats), "batch norm statistics moved"


def test_a_backbone_that_does_not_fit_is_refused_by_key(tmp_path):
    path = export_backbone(build_centre_region_regressor("4_conv", radius=1, spatial_dims=2), tmp_path / "b.pt")
    shape = r"4 key\(s\) of another shape \[backbone.0.conv.weight: file \(16, 1, 3, 3\) vs network \(16, 1, 3, 3, 3\)"
    with pytest.raises(ValueError, match=r"does not fit the configured network: " + shape):
        load_pretrained_backbone(build_centre_voxel_net("4_conv", 2, spatial_dims=3), path)
    with pytest.raises(ValueError, match=r"missing key\(s\).*the file was trained for \{'net': '4_conv'"):
        load_pretrained_backbone(build_centre_voxel_net("4_conv_resnet", 2, spatial_dims=2), path)
    with pytest.raises(ValueError, match="UNet has no 'backbone' module"):
        load_pretrained_backbone(UNet(2, 1, 1, (4, 8), (2,)), path)


def test_bad_files_and_flags(tmp_path):
    net = build_centre_voxel_net("4_conv", 2, spatial_dims=2)
    with pytest.raises(FileNotFoundError, match="nothing.pt does not exist"):
        load_pretrained_backbone(net, tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt: cannot read it as a torch file"):
        load_pretrained_backbone(net, tmp_path / "junk.pt")
    torch.save({"model": net.state_dict()}, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="ckpt.pt: expected \\{'backbone': state_dict"):
        load_pretrained_backbone(net, tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="no pretrained_backbone is given"):
        load_pretrained_backbone(net, None, freeze=True)
    with pytest.raises(ValueError, match="freeze_backbone must be true or false"):
        load_pretrained_backbone(net, None, freeze="yes")
