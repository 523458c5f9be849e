"""Tests of cseg_monai.metrics.classification: hand-checked scores, ignore index, Ignite pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError

from cseg_monai.metrics import (
    AccuracyMetric,
    KappaMetric,
    MacroAPMetric,
    MacroF1Metric,
    PooledClassificationMetric,
    classification_scores,
)
from cseg_monai.metrics import classification as cls_mod

# ---------------------------------------------------------------------------- 2 classes
# voxel  y  p1    pred (argmax)
#   0    0  0.1   0
#   1    0  0.2   0
#   2    0  0.6   1   false positive of class 1
#   3    0  0.3   0
#   4    1  0.9   1
#   5    1  0.7   1
#   6    1  0.4   0   false negative of class 1
#   7    1  0.8   1
# confusion: TN=3, FP=1, FN=1, TP=3
# accuracy = 6/8 = 0.75
# F1(1) = 2TP / (2TP + FP + FN) = 6/8 = 0.75; F1(0) = 6/8 = 0.75 (symmetric); macro 0.75
# kappa: p_o = 0.75, p_e = 0.5*0.5 + 0.5*0.5 = 0.5 -> (0.75 - 0.5) / 0.5 = 0.5
# AP(1): ranking by p1: .9+ .8+ .7+ .6- .4+ ...; precisions at the positives 1, 1, 1, 4/5
#        -> (1 + 1 + 1 + 0.8) / 4 = 0.95
# AP(0): ranking by p0 = 1 - p1: .9+ .8+ .7+ .6(v6)- .4(v2)+ ...; same 0.95; macro 0.95
Y2 = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P1 = np.array([0.1, 0.2, 0.6, 0.3, 0.9, 0.7, 0.4, 0.8])
PROBS2 = np.stack([1 - P1, P1], axis=1)  # (M, 2)

# ---------------------------------------------------------------------------- 3 classes
# voxel  y  probs              pred
#   0    0  [0.7, 0.2, 0.1]    0
#   1    0  [0.3, 0.6, 0.1]    1
#   2    1  [0.2, 0.5, 0.3]    1
#   3    1  [0.1, 0.8, 0.1]    1
#   4    2  [0.1, 0.1, 0.8]    2
#   5    2  [0.5, 0.1, 0.4]    0
# confusion (rows true, cols pred): [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
# accuracy = 4/6
# F1(0) = 2*1 / (2 + 1 + 1) = 0.5; F1(1) = 2*2 / (4 + 1 + 0) = 0.8; F1(2) = 2*1 / (2 + 0 + 1) = 2/3
# macro F1 = (0.5 + 0.8 + 2/3) / 3 = 0.655556
# kappa: p_o = 4/6; rows [2, 2, 2], cols [2, 3, 1]: p_e = (4 + 6 + 2) / 36 = 1/3 -> (2/3 - 1/3) / (2/3) = 0.5
# AP(0): scores .7+ .5- .3+ ... -> (1 + 2/3) / 2 = 5/6
# AP(1): scores .8+ .6- .5+ ... -> (1 + 2/3) / 2 = 5/6
# AP(2): scores .8+ .4+ .3- ... -> 1
# macro AP = (5/6 + 5/6 + 1) / 3 = 0.888889
Y3 = np.array([0, 0, 1, 1, 2, 2])
PROBS3 = np.array(
    [[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.5, 0.1, 0.4]]
)


def test_two_class_hand_example() -> None:
    s = classification_scores(PROBS2, Y2, n_classes=2)
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["per_class_f1"].tolist() == pytest.approx([0.75, 0.75])
    assert s["macro_f1"] == pytest.approx(0.75)
    assert s["kappa"] == pytest.approx(0.5)
    assert s["per_class_ap"].tolist() == pytest.approx([0.95, 0.95])
    assert s["macro_ap"] == pytest.approx(0.95)
    assert s["n_voxels"] == 8 and s["class_counts"].tolist() == [4, 4]


def test_three_class_hand_example() -> None:
    s = classification_scores(torch.tensor(PROBS3), torch.tensor(Y3), n_classes=3)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["per_class_f1"].tolist() == pytest.approx([0.5, 0.8, 2 / 3])
    assert s["macro_f1"] == pytest.approx(0.655556, abs=1e-6)
    assert s["kappa"] == pytest.approx(0.5)
    assert s["per_class_ap"].tolist() == pytest.approx([5 / 6, 5 / 6, 1.0])
    assert s["macro_ap"] == pytest.approx(0.888889, abs=1e-6)


def test_spatial_layouts_and_logits() -> None:
    # (M, C) -> (B=2, C, H=1, W=3) with targets (B, 1, H, W) and (B, H, W)
    probs = PROBS3.reshape(2, 1, 3, 3).transpose(0, 3, 1, 2)  # (2, 3, 1, 3)
    target = Y3.reshape(2, 1, 1, 3)
    ref = classification_scores(PROBS3, Y3, n_classes=3)
    for t in (target, target[:, 0]):
        s = classification_scores(probs, t, n_classes=3)
        assert s["macro_ap"] == pytest.approx(ref["macro_ap"]) and s["kappa"] == pytest.approx(ref["kappa"])
    # logits: log-probabilities give back the same probabilities after the softmax
    s = classification_scores(np.log(PROBS3), Y3, n_classes=3, from_logits=True)
    assert s["per_class_ap"].tolist() == pytest.approx(ref["per_class_ap"].tolist())
    assert s["macro_f1"] == pytest.approx(ref["macro_f1"])


@pytest.mark.parametrize("ignore_index", [255, -100, -1, 9])
def test_ignored_voxels_change_nothing(ignore_index: int) -> None:
    rng = np.random.default_rng(0)
    extra = rng.dirichlet(np.ones(3), size=7)  # arbitrary (confident, wrong, ...) predictions
    probs = np.concatenate([PROBS3[:3], extra, PROBS3[3:]])
    target = np.concatenate([Y3[:3], np.full(7, ignore_index), Y3[3:]])
    ref = classification_scores(PROBS3, Y3, n_classes=3)
    s = classification_scores(probs, target, n_classes=3, ignore_index=ignore_index)
    for key in ("accuracy", "macro_f1", "macro_ap", "kappa", "n_voxels"):
        assert s[key] == pytest.approx(ref[key]), key
    np.testing.assert_allclose(s["per_class_f1"], ref["per_class_f1"])
    np.testing.assert_allclose(s["per_class_ap"], ref["per_class_ap"])


def test_class_absent_from_targets() -> None:
    # the 2-class example as 3 classes; class 2 is never labelled and never predicted
    probs = np.concatenate([PROBS2 * 0.9, np.full((8, 1), 0.1)], axis=1)
    s = classification_scores(probs, Y2, n_classes=3)
    assert math.isnan(s["per_class_ap"][2])  # AP undefined without positives -> NaN
    assert s["macro_ap"] == pytest.approx(0.95)  # mean over classes 0, 1 only
    assert s["per_class_f1"].tolist() == pytest.approx([0.75, 0.75, 0.0])  # zero_division=0
    assert s["macro_f1"] == pytest.approx(0.75)  # class 2 neither labelled nor predicted: not averaged
    assert s["kappa"] == pytest.approx(0.5) and s["class_counts"].tolist() == [4, 4, 0]
    # now voxel 2 (label 0) is predicted as class 2: a false positive of a class never labelled
    probs[2] = [0.1, 0.2, 0.7]
    s = classification_scores(probs, Y2, n_classes=3)
    # F1(0): TP 3, FP 1 (v6), FN 1 (v2) -> 0.75; F1(1): TP 3, FP 0, FN 1 -> 6/7; F1(2) = 0
    assert s["per_class_f1"].tolist() == pytest.approx([0.75, 6 / 7, 0.0])
    assert s["macro_f1"] == pytest.approx((0.75 + 6 / 7 + 0.0) / 3)  # predicted class counts
    assert math.isnan(s["per_class_ap"][2])


def test_undefined_kappa_is_nan() -> None:
    s = classification_scores(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 0]), n_classes=2)
    assert s["accuracy"] == 1.0 and math.isnan(s["kappa"])


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"probs has 2 class channels \(dim 1 of \(6, 2\)\) but n_classes=3"):
        classification_scores(PROBS3[:, :2], Y3, n_classes=3)
    with pytest.raises(ValueError, match=r"outside \[0, 2\] that are not ignore_index=255: \[3, 7\]"):
        classification_scores(PROBS3, np.array([0, 3, 1, 7, 2, 255]), n_classes=3)
    with pytest.raises(ValueError, match="target must hold integer class ids, got dtype float64"):
        classification_scores(PROBS3, Y3.astype(float), n_classes=3)
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        classification_scores(PROBS3 * 3, Y3, n_classes=3)
    with pytest.raises(ValueError, match="probs contain NaN or infinite values"):
        classification_scores(np.where(PROBS3 > 0.75, np.nan, PROBS3), Y3, n_classes=3)
    with pytest.raises(ValueError, match=r"shape mismatch: probs \(6, 3\) needs target shaped \(6,\)"):
        classification_scores(PROBS3, Y3[:5], n_classes=3)
    with pytest.raises(ValueError, match="no labelled voxels to score: every target equals ignore_index=255"):
        classification_scores(PROBS3, np.full(6, 255), n_classes=3)
    with pytest.raises(ValueError, match="n_classes must be an int >= 2"):
        classification_scores(PROBS3, Y3, n_classes=1)
    with pytest.raises(ValueError, match="key must be one of"):
        PooledClassificationMetric(3, key="f2")
    with pytest.raises(ValueError, match="max_voxels must be None or an int >= 1"):
        MacroF1Metric(3, max_voxels=0)


# ---------------------------------------------------------------------------- Ignite
def _batches(n: int = 3, c: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        probs = torch.softmax(torch.randn(2, c, 5, 6, generator=g) * 2, dim=1)
        labels = torch.randint(0, c, (2, 1, 5, 6), generator=g)
        labels[:, :, :2] = 255  # sparse labels
        out.append((probs, labels))
    return out


def _metrics(**kwargs) -> dict[str, PooledClassificationMetric]:
    return {
        "accuracy": AccuracyMetric(4, **kwargs),
        "macro_f1": MacroF1Metric(4, **kwargs),
        "macro_ap": MacroAPMetric(4, **kwargs),
        "kappa": KappaMetric(4, **kwargs),
    }


@pytest.mark.parametrize("decollated", [False, True])
def test_engine_over_batches_equals_pooled_function(decollated: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = _batches()
    calls = []
    original = cls_mod._scores_from_flat
    monkeypatch.setattr(cls_mod, "_scores_from_flat", lambda *a: calls.append(1) or original(*a))
    cls_mod._SCORE_CACHE.clear()

    def step(engine: Engine, batch: tuple[torch.Tensor, torch.Tensor]):
        probs, labels = batch
        return (list(probs), list(labels)) if decollated else (probs, labels)  # MONAI-decollated lists

    engine = Engine(step)
    for name, metric in _metrics().items():
        metric.attach(engine, name)
    state = engine.run(batches, max_epochs=1)
    all_probs = torch.cat([b[0] for b in batches])
    all_labels = torch.cat([b[1] for b in batches])
    ref = classification_scores(all_probs, all_labels, n_classes=4)
    for key in ("accuracy", "macro_f1", "macro_ap", "kappa"):
        assert isinstance(state.metrics[key], float)
        assert state.metrics[key] == pytest.approx(ref[key], rel=1e-9), key
    assert len(calls) == 2  # the 4 metrics shared one computation (+1 for the reference)


def test_subsampling_is_bounded_reproducible_and_exact_when_large() -> None:
    batches = _batches()
    n_labelled = sum(int((b[1] != 255).sum()) for b in batches)  # 3 * 2 * 3 * 6 = 108

    def run(**kwargs) -> tuple[float, PooledClassificationMetric]:
        m = MacroAPMetric(4, **kwargs)
        m.reset()
        for b in batches:
            m.update(b)
        return m.compute(), m

    exact, _ = run()
    assert run(max_voxels=n_labelled)[0] == pytest.approx(exact)
    a, ma = run(max_voxels=40, seed=3)
    b, _ = run(max_voxels=40, seed=3)
    assert ma.scores["n_voxels"] == 40 and a == b
    # the kept voxels are a subset of the labelled ones
    pooled = np.concatenate([classification_scores_rows(*bt) for bt in batches])
    kept = np.concatenate([ma._pooled()[0], ma._pooled()[1][:, None]], axis=1)
    assert all((np.abs(pooled - row).max(axis=1) < 1e-12).any() for row in kept)


def classification_scores_rows(probs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """(probs, label) rows of the labelled voxels, as the metric pools them."""
    p = probs.movedim(1, -1).reshape(-1, probs.shape[1]).double().numpy()
    t = labels.reshape(-1).numpy()
    return np.concatenate([p, t[:, None]], axis=1)[t != 255]


def test_metric_not_computable_and_reset() -> None:
    m = KappaMetric(4)
    m.reset()
    with pytest.raises(NotComputableError):
        m.compute()
    m.update((torch.full((1, 4, 2, 2), 0.25), torch.full((1, 1, 2, 2), 255)))
    with pytest.raises(NotComputableError, match="at least one labelled voxel"):
        m.compute()
    with pytest.raises(ValueError, match="both be lists of the same length"):
        m.update(([torch.zeros(4, 2, 2)], torch.zeros(1, 1, 2, 2, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"probs has 1 class channels"):
        m.update((torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.long)))


def test_in_monai_supervised_evaluator() -> None:
    from monai.engines import SupervisedEvaluator
    from monai.handlers import from_engine
    from monai.transforms import Activationsd

    batches = _batches(n=2)
    data = [{"image": torch.log(p), "label": y} for p, y in batches]  # log-probs as the "network" output
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=data,
        network=torch.nn.Identity(),
        postprocessing=Activationsd(keys="pred", softmax=True),
        key_val_metric={"val_macro_f1": MacroF1Metric(4, output_transform=from_engine(["pred", "label"]))},
        additional_metrics={"val_kappa": KappaMetric(4, output_transform=from_engine(["pred", "label"]))},
    )
    evaluator.run()
    ref = classification_scores(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]), 4)
    assert evaluator.state.metrics["val_macro_f1"] == pytest.approx(ref["macro_f1"], rel=1e-6)
    assert evaluator.state.metrics["val_kappa"] == pytest.approx(ref["kappa"], rel=1e-6)
