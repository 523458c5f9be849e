"""Pretext networks: shapes, backward, the reparametrisation against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from cseg_monai.networks import CentreVoxelVAE, build_centre_region_regressor, build_centre_voxel_net, centre_region_size, reparameterise


@pytest.mark.parametrize("name, dims, radius", [("4_conv", 2, 1), ("3_layer_8", 3, 0), ("4_conv_resnet_valid", 2, 2)])
def test_regressor_predicts_the_region_and_shares_the_classifier_backbone(name, dims, radius):
    net = build_centre_region_regressor(name, radius=radius, spatial_dims=dims)
    k = centre_region_size(radius, dims)
    x = torch.rand(2, 1, *net.patch_size, requires_grad=True)
    out = net(x)
    assert tuple(out.shape) == (2, k) + (1,) * dims
    out.sum().backward()
    assert x.grad is not None
    classifier = build_centre_voxel_net(name, 6, spatial_dims=dims)
    own, theirs = net.backbone.state_dict(), classifier.backbone.state_dict()
    assert own.keys() == theirs.keys() and all(own[k].shape == theirs[k].shape for k in own)


def test_vae_shapes_backward_and_deterministic_eval():
    net = CentreVoxelVAE("4_conv", spatial_dims=2, latent_dim=8, hidden=32)
    x = torch.rand(3, 1, 32, 32)
    recon, mean, logvar = net(x)
    assert recon.shape == x.shape and mean.shape == logvar.shape == (3, 8)
    assert 0 <= recon.min() and recon.max() <= 1
    (recon.mean() + mean.sum()).backward()
    net.eval()
    assert torch.equal(net(x)[0], net(x)[0]), "eval mode decodes the mean"
    with pytest.raises(ValueError, match="takes patches of \\(32, 32\\), got \\(30, 30\\)"):
        net(torch.rand(1, 1, 30, 30))


def test_reparameterise_by_hand():
    mean = torch.tensor([[0.5, -1.0]])
    logvar = torch.tensor([[math.log(0.25), math.log(9.0)]])
    eps = torch.tensor([[2.0, -1.0]])
    # mean + eps * sd: 0.5 + 2 * 0.5 = 1.5, -1 + (-1) * 3 = -4 (the original's eps * logvar would give -2.77 and -2.20)
    assert torch.allclose(reparameterise(mean, logvar, eps), torch.tensor([[1.5, -4.0]]))
    draws = reparameterise(torch.zeros(20000, 1), torch.full((20000, 1), math.log(4.0)))
    assert abs(float(draws.std()) - 2.0) < 0.05 and abs(float(draws.mean())) < 0.05
    with pytest.raises(ValueError, match="differ in shape"):
        reparameterise(torch.zeros(2, 3), torch.zeros(2, 4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="radius must be a whole number >= 0"):
        centre_region_size(-1, 2)
    with pytest.raises(ValueError, match="latent_dim must be a positive int"):
        CentreVoxelVAE("4_conv", latent_dim=0)
    with pytest.raises(ValueError, match="does not fit the patch"):
        build_centre_region_regressor("3_layer_8", radius=5, spatial_dims=2)
