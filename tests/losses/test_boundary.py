"""Weighted BCE + Dice against a hand computation: one sigmoid, weights everywhere."""

from __future__ import annotations

import pytest
import torch

from cseg_monai.losses import WeightedBCEDiceLoss


def test_matches_a_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 4, 5, 6)
    target = (torch.rand(2, 1, 4, 5, 6) > 0.7).float()
    weight = torch.rand(2, 1, 4, 5, 6) * 3 + 0.1
    p = 1 / (1 + torch.exp(-logits))  # the one sigmoid
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    expected_bce = (weight * bce).sum() / weight.sum()
    dice = (2 * (weight * p * target).sum() + 1e-6) / ((weight * p).sum() + (weight * target).sum() + 1e-6)
    loss = WeightedBCEDiceLoss(bce_weight=1.0, dice_weight=0.5)(logits, target, weight)
    assert loss.item() == pytest.approx((expected_bce + 0.5 * (1 - dice)).item(), rel=1e-5)


def test_non_boundary_voxels_count_and_gradients_flow():
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    loss = WeightedBCEDiceLoss(dice_weight=0.0)(logits, target)
    loss.backward()
    assert (logits.grad[0, 0, 0, 1:] != 0).all() and (logits.grad[0, 0, 1] != 0).all()  # background voxels train too
    # a one-channel weight broadcasts over two output channels
    two = WeightedBCEDiceLoss()(torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3), torch.ones(1, 1, 3, 3))
    assert torch.isfinite(two)


def test_warns_on_probabilities_and_checks_shapes():
    with pytest.warns(UserWarning, match="pass logits"):
        WeightedBCEDiceLoss()(torch.rand(1, 1, 8, 8), torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        WeightedBCEDiceLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="weight"):
        WeightedBCEDiceLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(1, 3, 4, 4))
    with pytest.raises(ValueError, match="not both 0"):
        WeightedBCEDiceLoss(0.0, 0.0)


def test_packed_weight_equals_explicit_weight():
    torch.manual_seed(1)
    logits, target, weight = torch.randn(2, 2, 3, 4, 5), (torch.rand(2, 2, 3, 4, 5) > 0.5).float(), torch.rand(2, 1, 3, 4, 5)
    explicit = WeightedBCEDiceLoss()(logits, target, weight)
    packed = WeightedBCEDiceLoss(packed_weight=True)(logits, torch.cat([target, weight], dim=1))
    assert packed.item() == pytest.approx(explicit.item(), rel=1e-6)
    with pytest.raises(ValueError, match="one channel more"):
        WeightedBCEDiceLoss(packed_weight=True)(logits, target)
