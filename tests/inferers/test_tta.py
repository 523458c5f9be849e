"""Test-time augmentation: the 16 flips and y/x transposes of a volume, and the dihedral (Y, X) case."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from cseg_monai.common.flips import FLIP_TRANSPOSE_16, apply_flip_transpose, undo_flip_transpose
from cseg_monai.inferers import DihedralTTAInferer, dihedral_tta
from cseg_monai.inferers.tta import FlipTransposeTTAInferer, flip_transpose_tta


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


# ---------------------------------------------------------------- 16-fold flips and transposes


def test_a_model_equivariant_to_the_group_is_unchanged_by_tta_and_others_are_averaged():
    torch.manual_seed(3)
    conv = torch.nn.Conv3d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():  # symmetrise the kernel over the 16 transforms: the conv becomes equivariant
        k = conv.weight.clone()
        conv.weight.copy_(sum(apply_flip_transpose(k, t) for t in FLIP_TRANSPOSE_16) / 16)
    x = torch.rand(1, 1, 6, 8, 8)
    with torch.no_grad():
        assert torch.allclose(flip_transpose_tta(x, conv, 16), conv(x), atol=1e-6)
        assert torch.allclose(flip_transpose_tta(x, conv, 16, reduce="max"), conv(x), atol=1e-6)
        plain = torch.nn.Conv3d(1, 1, 3, padding=1)
        outs = [undo_flip_transpose(torch.sigmoid(plain(apply_flip_transpose(x, t))), t) for t in FLIP_TRANSPOSE_16]
        mean = flip_transpose_tta(x, plain, 16, torch.sigmoid)
        assert torch.allclose(mean, torch.stack(outs).mean(0), atol=1e-6)
        assert not torch.allclose(mean, torch.sigmoid(plain(x)), atol=1e-3)
        assert torch.equal(flip_transpose_tta(x, plain, 16, torch.sigmoid, "max"), torch.stack(outs).amax(0))


def test_the_16_fold_inferer_wraps_a_sliding_window():
    x = torch.rand(1, 1, 4, 16, 16)
    inf = FlipTransposeTTAInferer(SlidingWindowInferer(roi_size=(2, 8, 8), overlap=0.5), n_transforms=16, activation="sigmoid")
    with torch.no_grad():
        out = inf(x, torch.nn.Identity())
    assert torch.allclose(out, torch.sigmoid(x), atol=1e-6)
    assert flip_transpose_tta(torch.rand(1, 1, 4, 4), lambda t: t, 8).shape == (1, 1, 4, 4)
    with pytest.raises(ValueError, match="16 transforms need"):
        flip_transpose_tta(torch.rand(1, 1, 4, 4), lambda t: t, 16)
    with pytest.raises(ValueError, match="a z flip needs"):
        flip_transpose_tta(torch.rand(1, 1, 4, 4), lambda t: t, [(True, False, False, False)])
    with pytest.raises(ValueError, match="reduce"):
        FlipTransposeTTAInferer(reduce="median")
    with pytest.raises(ValueError, match="n_transforms"):
        FlipTransposeTTAInferer(n_transforms=3)
