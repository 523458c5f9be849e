"""Cleft losses against hand computations: the per-crop positive weight, focal (gamma 2), BCE + Dice."""

from __future__ import annotations

import math

import pytest
import torch

from cseg_monai.losses.cleft import BalancedBCEDiceLoss, BalancedBinaryFocalLoss, crop_positive_weight, crop_weight_map


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


LOGITS = [2.0, -1.0, 0.0, -3.0]
TARGET = [1.0, 0.0, 0.0, 0.0]


def _tensor(values):
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, 2, 2)


def test_crop_weight_is_one_minus_f_over_f_floored():
    target = torch.zeros(3, 1, 10, 10)
    target[0, 0, :5] = 1  # f = 0.5 -> 1
    target[1, 0, 0, 0] = 1  # f = 0.01 -> 99
    assert crop_positive_weight(target).tolist() == pytest.approx([1.0, 99.0, 9999.0])  # crop 2: no cleft, floor 1e-4
    assert crop_positive_weight(torch.ones(1, 1, 4)).tolist() == [0.0]
    w = crop_weight_map(target)
    assert w[1, 0, 0, 0] == pytest.approx(99.0) and w[1, 0, 5, 5] == 1.0 and (w[2] == 1).all()
    with pytest.raises(ValueError, match="min_fraction"):
        crop_positive_weight(target, min_fraction=0.0)


def test_focal_gamma_2_by_hand():
    # f = 1/4: the one positive weighs 3, the negatives 1
    expected = 0.0
    for x, t in zip(LOGITS, TARGET):
        pt = _sigmoid(x) if t else 1.0 - _sigmoid(x)
        expected += (3.0 if t else 1.0) * (1.0 - pt) ** 2 * -math.log(pt)
    loss = BalancedBinaryFocalLoss(gamma=2.0)(_tensor(LOGITS), _tensor(TARGET))
    assert loss.item() == pytest.approx(expected / 4, rel=1e-9)
    plain = sum((1.0 - (_sigmoid(x) if t else 1 - _sigmoid(x))) ** 2 * -math.log(_sigmoid(x) if t else 1 - _sigmoid(x)) for x, t in zip(LOGITS, TARGET))
    assert BalancedBinaryFocalLoss(balance=False)(_tensor(LOGITS), _tensor(TARGET)).item() == pytest.approx(plain / 4, rel=1e-9)


def test_focal_weights_each_crop_by_its_own_density_and_is_stable():
    logits = torch.tensor([[3.0, -2.0], [3.0, -2.0]]).view(2, 1, 2)
    target = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(2, 1, 2)  # crop 0: w = 1; crop 1: all cleft, w = 0
    got = BalancedBinaryFocalLoss(gamma=0.0)(logits, target).item()
    expected = (-math.log(_sigmoid(3.0)) - math.log(1 - _sigmoid(-2.0))) / 4  # crop 1 contributes nothing
    assert got == pytest.approx(expected, rel=1e-6)
    big = torch.tensor([[80.0, -80.0]]).view(1, 1, 2)
    loss = BalancedBinaryFocalLoss()(big.requires_grad_(), torch.tensor([[0.0, 1.0]]).view(1, 1, 2))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 10 and torch.isfinite(big.grad).all()


def test_bce_dice_by_hand():
    x, t = _tensor(LOGITS), _tensor(TARGET)
    w = [3.0, 1.0, 1.0, 1.0]
    bce = sum(wi * -(ti * math.log(_sigmoid(xi)) + (1 - ti) * math.log(1 - _sigmoid(xi))) for xi, ti, wi in zip(LOGITS, TARGET, w)) / sum(w)
    p = [_sigmoid(v) for v in LOGITS]
    inter = sum(wi * pi * ti for wi, pi, ti in zip(w, p, TARGET))
    dice = (2 * inter + 1e-6) / (sum(wi * pi for wi, pi in zip(w, p)) + sum(wi * ti for wi, ti in zip(w, TARGET)) + 1e-6)
    assert BalancedBCEDiceLoss()(x, t).item() == pytest.approx(bce + 1 - dice, rel=1e-9)
    assert BalancedBCEDiceLoss(dice_weight=0.0)(x, t).item() == pytest.approx(bce, rel=1e-9)


@pytest.mark.parametrize("loss", [BalancedBinaryFocalLoss(), BalancedBCEDiceLoss()])
def test_bad_inputs_are_refused(loss):
    good = torch.zeros(1, 1, 2, 4, 4)
    with pytest.raises(ValueError, match="one logit channel"):
        loss(torch.zeros(1, 2, 2, 4, 4), torch.zeros(1, 2, 2, 4, 4))
    with pytest.raises(ValueError, match="must have the logits' shape"):
        loss(good, torch.zeros(1, 1, 2, 4, 5))
    with pytest.raises(ValueError, match="0 / 1"):
        loss(good, torch.full_like(good, 223.0))
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full_like(good, float("nan")), good)
    with pytest.raises(ValueError, match="gamma"):
        BalancedBinaryFocalLoss(gamma=-1)
