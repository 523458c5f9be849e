"""Dihedral test-time augmentation."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from cseg_monai.inferers import DihedralTTAInferer, dihedral_tta


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 5, padding=2))


def test_full_group_average_is_rotation_and_flip_equivariant():
    net = _net().eval()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        y = dihedral_tta(x, net, 8)
        y_rot = dihedral_tta(torch.rot90(x, 1, (-2, -1)), net, 8)
        y_flip = dihedral_tta(torch.flip(x, (-1,)), net, 8)
        plain = net(x)
    torch.testing.assert_close(y_rot, torch.rot90(y, 1, (-2, -1)), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(y_flip, torch.flip(y, (-1,)), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(y, plain, atol=1e-4)  # the net itself is not equivariant: TTA changed it


def test_identity_only_and_manual_average():
    net = _net().eval()
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(dihedral_tta(x, net, 1), net(x))
        manual = (net(x) + torch.rot90(net(torch.rot90(x, 1, (-2, -1))), -1, (-2, -1))) / 2
        torch.testing.assert_close(dihedral_tta(x, net, 2), manual)


def test_inferer_wraps_sliding_window_and_applies_activation_before_averaging():
    net = _net().eval()
    x = torch.rand(1, 1, 20, 20)
    inferer = DihedralTTAInferer(SlidingWindowInferer(roi_size=(8, 8), overlap=0.5), n_transforms=4, activation="sigmoid")
    with torch.no_grad():
        out = inferer(x, net)
        expected = dihedral_tta(x, lambda t: torch.sigmoid(SlidingWindowInferer((8, 8), overlap=0.5)(t, net)), 4)
    assert out.shape == (1, 1, 20, 20) and 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("kwargs, match", [({"n_transforms": 3}, "1, 2, 4 or 8"), ({"activation": "relu"}, "activation")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DihedralTTAInferer(**kwargs)
