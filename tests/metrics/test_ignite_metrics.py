"""Tests of the Ignite membrane metrics inside real Ignite engines (no mocks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from scipy import ndimage as ndi

from cseg_monai.metrics import (
    MembraneDiceMetric,
    PixelErrorMetric,
    VInfoMetric,
    VRandMetric,
    dice_score,
    isbi_scores_per_threshold,
    pixel_error,
)

THRESHOLDS = [0.2, 0.4, 0.6, 0.8]


def _image(rng: np.random.Generator, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A random grid of 1-px membrane lines and a noisy probability map for it."""
    target = np.zeros((size, size), dtype=np.float32)
    target[rng.choice(np.arange(2, size - 2), 2, replace=False), :] = 1
    target[:, rng.choice(np.arange(2, size - 2), 2, replace=False)] = 1
    prob = np.clip(0.75 * ndi.gaussian_filter(target, 0.7) / 0.5 + rng.normal(0, 0.2, target.shape), 0, 1)
    return prob.astype(np.float32), target


def _batches(seed: int = 0) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """3 batches of 2, 3 and 1 images."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (2, 3, 1):
        pairs = [_image(rng) for _ in range(n)]
        out.append(([p for p, _ in pairs], [t for _, t in pairs]))
    return out


def _expected(batches) -> dict[str, float]:
    probs = [p for b in batches for p in b[0]]
    targets = [t for b in batches for t in b[1]]
    per = [isbi_scores_per_threshold(p, t, thresholds=THRESHOLDS, thin=True) for p, t in zip(probs, targets)]
    v_rand = np.mean([x["v_rand"] for x in per], axis=0)  # mean over images, per threshold
    v_info = np.mean([x["v_info"] for x in per], axis=0)
    return {
        "pixel_error": float(np.mean([pixel_error(p > 0.5, t) for p, t in zip(probs, targets)])),
        "dice": float(np.mean([dice_score(p > 0.5, t) for p, t in zip(probs, targets)])),
        "v_rand": float(v_rand.max()),
        "v_rand_threshold": THRESHOLDS[int(np.argmax(v_rand))],
        "v_info": float(v_info.max()),
        "v_info_threshold": THRESHOLDS[int(np.argmax(v_info))],
    }


def _metrics() -> dict:
    return {
        "pixel_error": PixelErrorMetric(),
        "dice": MembraneDiceMetric(threshold=0.5),
        "v_rand": VRandMetric(thin=True, thresholds=THRESHOLDS),
        "v_info": VInfoMetric(thresholds=THRESHOLDS),
    }


def _check(engine: Engine, metrics: dict, expected: dict) -> None:
    for name in ("pixel_error", "dice", "v_rand", "v_info"):
        value = engine.state.metrics[name]
        assert isinstance(value, float), name
        assert value == pytest.approx(expected[name], abs=1e-12), name
    assert metrics["v_rand"].best_threshold == expected["v_rand_threshold"]
    assert metrics["v_info"].best_threshold == expected["v_info_threshold"]
    assert metrics["v_rand"].scores_per_threshold.shape == (len(THRESHOLDS),)


def test_engine_with_lists_of_channel_first_tensors():
    """The format of MONAI's from_engine(["pred", "label"]): lists of (1, H, W) tensors."""
    batches = _batches()
    data = [
        ([torch.from_numpy(p)[None] for p in probs], [torch.from_numpy(t)[None] for t in targets])
        for probs, targets in batches
    ]
    engine = Engine(lambda e, batch: batch)
    metrics = _metrics()
    for name, metric in metrics.items():
        metric.attach(engine, name)
    engine.run(data, max_epochs=1)
    expected = _expected(batches)
    assert 0.0 < expected["v_rand"] < 1.0 and 0.0 < expected["pixel_error"] < 0.5
    _check(engine, metrics, expected)

    # a second run resets the accumulators: same values again
    engine.run(data, max_epochs=1)
    _check(engine, metrics, expected)


def test_engine_with_batched_tensors_and_output_transform():
    batches = _batches(seed=1)
    data = [
        {"pred": torch.from_numpy(np.stack(probs))[:, None], "label": torch.from_numpy(np.stack(targets))[:, None]}
        for probs, targets in batches
    ]  # (B, 1, H, W)
    engine = Engine(lambda e, batch: batch)

    def transform(out):
        return out["pred"], out["label"]

    metrics = {
        "pixel_error": PixelErrorMetric(output_transform=transform),
        "dice": MembraneDiceMetric(output_transform=transform),
        "v_rand": VRandMetric(thresholds=THRESHOLDS, output_transform=transform),
        "v_info": VInfoMetric(thresholds=THRESHOLDS, output_transform=transform, device="cpu"),
    }
    for name, metric in metrics.items():
        metric.attach(engine, name)
    engine.run(data, max_epochs=1)
    _check(engine, metrics, _expected(batches))


def test_metatensor_and_volume_items():
    from monai.data import MetaTensor

    rng = np.random.default_rng(2)
    (p0, t0), (p1, t1) = _image(rng), _image(rng)
    # one channel-first volume (1, Z=2, Y, X): every Z slice counts as one image
    pred = [MetaTensor(torch.from_numpy(np.stack([p0, p1]))[None])]
    label = [MetaTensor(torch.from_numpy(np.stack([t0, t1]))[None])]
    metric = PixelErrorMetric()
    metric.update((pred, label))
    assert metric.compute() == pytest.approx((pixel_error(p0 > 0.5, t0) + pixel_error(p1 > 0.5, t1)) / 2)


def test_not_computable_and_bad_inputs():
    with pytest.raises(NotComputableError):
        VRandMetric().compute()
    with pytest.raises(NotComputableError):
        PixelErrorMetric().compute()
    metric = MembraneDiceMetric()
    two_channels = [torch.rand(2, 8, 8)]
    with pytest.raises(ValueError, match=r"y_pred: expected a channel-first .* got shape \(2, 8, 8\)"):
        metric.update((two_channels, [torch.zeros(1, 8, 8)]))
    with pytest.raises(ValueError, match=r"y_pred holds 2 images but y holds 1"):
        metric.update(([torch.rand(1, 8, 8)] * 2, [torch.zeros(1, 8, 8)]))
    with pytest.raises(ValueError, match=r"y_pred holds values outside \[0, 1\]"):
        metric.update(([torch.full((1, 8, 8), 3.0)], [torch.zeros(1, 8, 8)]))
    with pytest.raises(ValueError, match=r"target is not binary"):
        VInfoMetric(thresholds=[0.5]).update(([torch.rand(1, 8, 8)], [torch.full((1, 8, 8), 0.5)]))
    with pytest.raises(ValueError, match=r"expected a batch \(B, 1, H, W\)"):
        metric.update((torch.rand(8, 8), torch.zeros(8, 8)))
    with pytest.raises(ValueError, match=r"thresholds must lie in"):
        VRandMetric(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match=r"thresholds must lie in"):
        PixelErrorMetric(threshold=-1)


def test_monai_supervised_evaluator():
    """The metrics as key_val_metric / additional_metrics of a MONAI SupervisedEvaluator."""
    from monai.engines import SupervisedEvaluator
    from monai.handlers import from_engine
    from monai.transforms import Activationsd

    batches = _batches(seed=3)
    # the "network" returns the stored logit; the post transform applies the sigmoid
    data = [
        {
            "image": torch.logit(torch.from_numpy(np.stack(p)).clamp(1e-4, 1 - 1e-4).double())[:, None],
            "label": torch.from_numpy(np.stack(t))[:, None],
        }
        for p, t in batches
    ]
    probs = [torch.sigmoid(d["image"]).float().numpy()[:, 0] for d in data]
    expected = _expected([(list(p), t) for p, (_, t) in zip(probs, batches)])
    transform = from_engine(["pred", "label"])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=data,
        network=torch.nn.Identity(),
        postprocessing=Activationsd(keys="pred", sigmoid=True),
        key_val_metric={"val_v_rand": VRandMetric(thresholds=THRESHOLDS, output_transform=transform)},
        additional_metrics={
            "val_v_info": VInfoMetric(thresholds=THRESHOLDS, output_transform=transform),
            "val_pixel_error": PixelErrorMetric(output_transform=transform),
            "val_dice": MembraneDiceMetric(output_transform=transform),
        },
    )
    evaluator.run()
    m = evaluator.state.metrics
    assert m["val_v_rand"] == pytest.approx(expected["v_rand"], abs=1e-6)
    assert m["val_v_info"] == pytest.approx(expected["v_info"], abs=1e-6)
    assert m["val_pixel_error"] == pytest.approx(expected["pixel_error"], abs=1e-6)
    assert m["val_dice"] == pytest.approx(expected["dice"], abs=1e-6)
    assert evaluator.state.best_metric == pytest.approx(expected["v_rand"], abs=1e-6)
