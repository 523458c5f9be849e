"""Tests of cseg_monai.losses.classification: hand-computed focal loss, ignore index, validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cseg_monai.common.constants import IGNORE_INDEX
from cseg_monai.losses import FocalLoss, MaskedCrossEntropyLoss

LN3 = math.log(3.0)

# Four voxels, two classes; the last voxel is unlabelled (ignore index 255).
#   voxel  logits      target  p = softmax[target]   CE = -log p   (1 - p)^2
#   0      [0,   0]    0       1/2                   0.6931472     0.25
#   1      [ln3, 0]    0       3/4                   0.2876821     0.0625
#   2      [ln3, 0]    1       1/4                   1.3862944     0.5625
#   3      [5,  -5]    255     (ignored)
HAND_LOGITS = [[0.0, 0.0], [LN3, 0.0], [LN3, 0.0], [5.0, -5.0]]
HAND_TARGET = [0, 0, 1, 255]
# per-voxel focal (gamma=2): 0.25*0.6931472 = 0.1732868, 0.0625*0.2876821 = 0.0179801,
# 0.5625*1.3862944 = 0.7797906; mean over the 3 labelled voxels = 0.9710575 / 3
HAND_FOCAL = 0.9710575 / 3  # 0.3236858
# the seed project's broadcast bug: mean(CE) * mean((1-p)^2)
#   = (2.3671237 / 3) * (0.875 / 3) = 0.7890412 * 0.2916667 = 0.2301370
HAND_WRONG = 0.2301370
# alpha = [1, 3]: 0.1732868 + 0.0179801 + 3 * 0.7797906 = 2.5306387, / 3
HAND_FOCAL_ALPHA = 2.5306387 / 3  # 0.8435462


def _hand_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(HAND_LOGITS, dtype=torch.float64, requires_grad=True), torch.tensor(HAND_TARGET)


def test_default_ignore_index() -> None:
    assert IGNORE_INDEX == 255
    assert FocalLoss().ignore_index == 255 and MaskedCrossEntropyLoss().ignore_index == 255


def test_focal_matches_hand_computation_and_differs_from_broadcast_bug() -> None:
    logits, target = _hand_inputs()
    loss = FocalLoss(gamma=2.0)(logits, target)
    assert loss.item() == pytest.approx(HAND_FOCAL, abs=1e-6)
    assert loss.item() == pytest.approx(0.3236858, abs=1e-6)
    # the seed project's formula, recomputed from torch, gives the (different) hand number
    p = torch.tensor([0.5, 0.75, 0.25], dtype=torch.float64)
    wrong = (-p.log()).mean() * ((1 - p) ** 2).mean()
    assert wrong.item() == pytest.approx(HAND_WRONG, abs=1e-6)
    assert abs(loss.item() - wrong.item()) > 0.09


def test_focal_alpha_hand_computation() -> None:
    logits, target = _hand_inputs()
    loss = FocalLoss(gamma=2.0, alpha=[1.0, 3.0])(logits, target)
    assert loss.item() == pytest.approx(HAND_FOCAL_ALPHA, abs=1e-6)
    per_voxel = FocalLoss(gamma=2.0, reduction="none")(logits, target)
    assert per_voxel.tolist() == pytest.approx([0.1732868, 0.0179801, 0.7797906, 0.0], abs=1e-6)
    assert FocalLoss(gamma=2.0, reduction="sum")(logits, target).item() == pytest.approx(0.9710575, abs=1e-6)


def _random_batch(seed: int = 0, c: int = 4, ignore: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, c, 5, 6, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, c, (2, 5, 6), generator=g)
    target[0, :2] = ignore
    target[1, :, 0] = ignore
    return logits, target


def test_gamma_zero_equals_cross_entropy() -> None:
    logits, target = _random_batch()
    ce = F.cross_entropy(logits, target, ignore_index=255)
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(ce.item(), rel=1e-12)
    assert MaskedCrossEntropyLoss()(logits, target).item() == pytest.approx(ce.item(), rel=1e-12)
    # with alpha the focal "mean" is over voxels (not weight-normalised like torch's weighted CE)
    w = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    n = int((target != 255).sum())
    weighted_sum = F.cross_entropy(logits, target, weight=w, ignore_index=255, reduction="sum")
    assert FocalLoss(gamma=0.0, alpha=w)(logits, target).item() == pytest.approx(weighted_sum.item() / n, rel=1e-12)


def test_focal_matches_monai_softmax_focal_loss() -> None:
    from monai.losses import FocalLoss as MonaiFocalLoss

    logits, target = _random_batch(seed=1)
    alpha = [0.25, 1.0, 2.0, 0.5]
    ours = FocalLoss(gamma=2.0, alpha=alpha)(logits, target.unsqueeze(1))
    monai = MonaiFocalLoss(gamma=2.0, alpha=alpha, use_softmax=True, to_onehot_y=True, ignore_index=255)(
        logits, target.unsqueeze(1)
    )
    assert ours.item() == pytest.approx(monai.item(), rel=1e-6)


@pytest.mark.parametrize("loss_fn", [FocalLoss(gamma=2.0), FocalLoss(gamma=0.5), MaskedCrossEntropyLoss()])
def test_target_layouts_and_ignored_voxels(loss_fn: torch.nn.Module) -> None:
    logits, target = _random_batch(seed=2)
    base = loss_fn(logits, target)
    assert loss_fn(logits, target.unsqueeze(1)).item() == pytest.approx(base.item(), rel=1e-12)  # (B, 1, H, W)
    flat_logits = logits.movedim(1, -1).reshape(-1, logits.shape[1])  # (M, C)
    assert loss_fn(flat_logits, target.reshape(-1)).item() == pytest.approx(base.item(), rel=1e-12)
    assert loss_fn(flat_logits, target.reshape(-1, 1)).item() == pytest.approx(base.item(), rel=1e-12)
    # changing the logits of ignored voxels changes neither the loss nor the gradient elsewhere
    x = logits.clone().requires_grad_(True)
    loss_fn(x, target).backward()
    ignored = (target == 255).unsqueeze(1).expand_as(x)
    assert torch.all(x.grad[ignored] == 0) and torch.isfinite(x.grad).all()
    changed = logits.clone()
    changed[ignored] = 1000.0
    assert loss_fn(changed, target).item() == pytest.approx(base.item(), rel=1e-12)


@pytest.mark.parametrize("ignore_index", [-100, -1, 7])
def test_any_ignore_index(ignore_index: int) -> None:
    logits, target = _random_batch(seed=3, ignore=ignore_index)
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index)
    assert FocalLoss(gamma=0.0, ignore_index=ignore_index)(logits, target).item() == pytest.approx(ce.item())
    assert MaskedCrossEntropyLoss(ignore_index=ignore_index)(logits, target).item() == pytest.approx(ce.item())


@pytest.mark.parametrize("loss_fn", [FocalLoss(), MaskedCrossEntropyLoss(weight=[1.0, 2.0, 3.0])])
def test_all_ignored_batch_gives_zero_with_grad(loss_fn: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = loss_fn(x, torch.full((2, 1, 4, 4), 255))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert x.grad is not None and torch.all(x.grad == 0)


def test_gradients_finite_for_confident_logits() -> None:
    x = torch.tensor([[60.0, -60.0, 0.0], [-60.0, 60.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    t = torch.tensor([0, 1, 2])  # p = 1 (rounded) for the first two voxels
    for gamma in (0.0, 0.5, 1.0, 2.0, 5.0):
        x.grad = None
        loss = FocalLoss(gamma=gamma)(x, t)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all(), gamma


def test_masked_ce_matches_torch_with_weight_and_smoothing() -> None:
    logits, target = _random_batch(seed=4)
    w = [1.0, 0.5, 2.0, 1.5]
    ours = MaskedCrossEntropyLoss(weight=w, label_smoothing=0.1)(logits, target.unsqueeze(1))
    ref = F.cross_entropy(
        logits, target, weight=torch.tensor(w, dtype=torch.float64), ignore_index=255, label_smoothing=0.1
    )
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    none = MaskedCrossEntropyLoss(reduction="none")(logits, target.unsqueeze(1))
    assert none.shape == target.shape and torch.all(none[target == 255] == 0)


@pytest.mark.parametrize("loss_fn", [FocalLoss(), MaskedCrossEntropyLoss()])
def test_bad_inputs_raise(loss_fn: torch.nn.Module) -> None:
    x = torch.zeros(2, 3, 4, 4)
    good = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"shape mismatch: input \(2, 3, 4, 4\) needs target shaped \(2, 4, 4\)"):
        loss_fn(x, torch.zeros(2, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="shape mismatch"):
        loss_fn(x, torch.zeros(2, 3, 4, 4, dtype=torch.long))  # one-hot-like target
    bad = good.clone()
    bad[0, 0, 0], bad[1, 0, 0] = 3, -1
    with pytest.raises(ValueError, match=r"outside \[0, 2\] that are not ignore_index=255: \[-1, 3\]"):
        loss_fn(x, bad)
    with pytest.raises(ValueError, match="target must hold integer class ids, got dtype torch.float32"):
        loss_fn(x, good.float())
    with pytest.raises(ValueError, match="integer class ids, got dtype torch.bool"):
        loss_fn(x, good.bool())
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="input contains NaN or infinite logits"):
        loss_fn(nan, good)
    with pytest.raises(ValueError, match="input must be floating-point logits"):
        loss_fn(x.long(), good)
    with pytest.raises(ValueError, match="at least 2 class channels"):
        loss_fn(torch.zeros(2, 1, 4, 4), good)
    with pytest.raises(ValueError, match=r"logits shaped \(B, C, \*spatial\) or \(M, C\)"):
        loss_fn(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="gamma must be a finite float >= 0"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="ignore_index must be an int"):
        FocalLoss(ignore_index=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction must be one of"):
        FocalLoss(reduction="avg")
    with pytest.raises(ValueError, match="alpha must be non-negative"):
        FocalLoss(alpha=[1.0, -1.0])
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        MaskedCrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight must be finite"):
        MaskedCrossEntropyLoss(weight=[1.0, float("nan")])
    with pytest.raises(ValueError, match="alpha has 2 entries but input has 3 classes"):
        FocalLoss(alpha=[1.0, 2.0])(torch.zeros(1, 3, 2), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="weight has 2 entries but input has 3 classes"):
        MaskedCrossEntropyLoss(weight=[1.0, 2.0])(torch.zeros(1, 3, 2), torch.zeros(1, 2, dtype=torch.long))
