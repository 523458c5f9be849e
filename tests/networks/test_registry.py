"""The registry builds every named net; unknown names are refused with the known ones listed."""

from __future__ import annotations

import pytest

from cseg_monai.networks.registry import BACKBONES, build_centre_voxel_net, nominal_patch_size


@pytest.mark.parametrize("name", [b for b in BACKBONES if b != "convnext_tiny_3d"])
def test_every_name_builds_at_its_nominal_patch(name):
    net = build_centre_voxel_net(name, 3, spatial_dims=2)
    assert net.patch_size == nominal_patch_size(name, 2) and net.n_classes == 3


def test_unknown_and_clashing_names():
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'; known: 4_conv"):
        build_centre_voxel_net("resnet50", 2)
    with pytest.raises(ValueError, match="fixed by the backbone name"):
        build_centre_voxel_net("4_conv", 2, norm="layer")
