"""Pretrained backbones: export, load, freeze; a file that does not fit is refused with its keys named."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import SwinUNETR, UNet

from cseg_monai.networks import (
    UNet3D,
    backbone_of,
    build_centre_region_regressor,
    build_centre_voxel_net,
    export_backbone,
    load_pretrained_backbone,
    unet_encoder,
)


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
    with pytest.raises(ValueError, match=r"missing key\(s\) \['backbone.bottom.*'net': '4_conv'.*the network is \{'net': 'UNet'"):
        load_pretrained_backbone(UNet(2, 1, 1, (4, 8), (2,)), path)
    with pytest.raises(ValueError, match="Conv2d has no backbone"):
        load_pretrained_backbone(torch.nn.Conv2d(1, 1, 3), path)


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


def _unet(out_channels: int, channels=(8, 16, 32, 64)) -> UNet:
    return UNet(2, 1, out_channels, channels, (2,) * (len(channels) - 1), num_res_units=2, norm="batch")


def test_unet_encoder_is_the_down_path_and_runs_to_the_bottom_features():
    net = _unet(1)
    encoder = unet_encoder(net)
    assert list(encoder) == ["down0", "down1", "down2", "bottom"]
    x = torch.rand(2, 1, 64, 64)
    for layer in encoder.values():
        x = layer(x)
    assert tuple(x.shape) == (2, 64, 8, 8), "the bottom layer: the last channels at stride 2^3"
    ids = {id(p) for p in encoder.parameters()}
    assert ids < {id(p) for p in net.parameters()}, "the network's own modules, not copies, and not all of them (the decoder)"


@pytest.mark.parametrize("freeze", [True, False])
def test_a_reconstruction_unet_encoder_loads_into_a_segmentation_unet(tmp_path, freeze):
    pretext = _unet(1)
    path = export_backbone(pretext, tmp_path / "unet.pt", {"pretext": "masked_image_modelling"})
    meta = torch.load(path, weights_only=True)["meta"]
    assert meta["net"] == "UNet" and meta["channels"] == [8, 16, 32, 64] and meta["strides"] == [2, 2, 2] and meta["spatial_dims"] == 2
    net = _unet(2)
    decoder_before = {k: v.clone() for k, v in net.model[2].state_dict().items()}
    load_pretrained_backbone(net, path, freeze=freeze)
    assert all(torch.equal(v, backbone_of(net).state_dict()[k]) for k, v in backbone_of(pretext).state_dict().items())
    assert all(torch.equal(decoder_before[k], v) for k, v in net.model[2].state_dict().items()), "the decoder keeps its own weights"
    stats = {k: v.clone() for k, v in backbone_of(net).state_dict().items() if "running" in k}
    net.train()
    net(torch.rand(2, 1, 32, 32) * 4 + 2).sum().backward()
    encoder_grads = [p.grad is None for p in backbone_of(net).parameters()]
    assert all(encoder_grads) is freeze and all(p.grad is not None for p in net.model[2].parameters())
    moved = any(not torch.equal(stats[k], backbone_of(net).state_dict()[k]) for k in stats)
    assert moved is not freeze, "frozen: the encoder's batch norm keeps its pretrained statistics"


def test_unets_of_other_widths_are_refused_by_key(tmp_path):
    path = export_backbone(_unet(1), tmp_path / "unet.pt")
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['backbone.down2.*of another shape.*'channels': \[8, 16, 32, 64\].*'channels': \[8, 16, 32\]"):
        load_pretrained_backbone(_unet(2, (8, 16, 32)), path)


def test_swinunetr_and_unet3d_backbones_are_their_encoders(tmp_path):
    swin = SwinUNETR(in_channels=1, out_channels=1, feature_size=12, spatial_dims=2)
    assert set(backbone_of(swin)) == {"swinViT", "encoder1", "encoder2", "encoder3", "encoder4", "encoder10"}
    path = export_backbone(swin, tmp_path / "swin.pt")
    target = SwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=2)
    load_pretrained_backbone(target, path, freeze=True)
    assert not any(p.requires_grad for p in target.swinViT.parameters()) and all(p.requires_grad for p in target.out.parameters())
    unet3d = UNet3D(in_channels=1, out_channels=1, f_maps=4, levels=3)
    assert backbone_of(unet3d) is unet3d.encoders
    path = export_backbone(unet3d, tmp_path / "u3d.pt")
    assert torch.load(path, weights_only=True)["meta"] == {"net": "UNet3D", "spatial_dims": 3, "in_channels": 1, "patch_size": None}
    target = load_pretrained_backbone(UNet3D(in_channels=1, out_channels=2, f_maps=4, levels=3), path)
    assert all(torch.equal(v, target.encoders.state_dict()[k]) for k, v in unet3d.encoders.state_dict().items())
