"""The masked-reconstruction metrics: pooled over items and iterations, inside a real Ignite engine."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from monai.handlers import from_engine

from cseg_monai.metrics import MaskedErrorMetric, MaskedGainMetric


def _item(value: float, hidden: int, size: int = 4) -> dict:
    mask = torch.zeros(1, size, size)
    mask.view(-1)[:hidden] = 1
    original = torch.full((1, size, size), value)
    return {"image": original * (1 - mask), "pred": torch.zeros(1, size, size), "label": torch.cat([original, mask])}


def test_metrics_pool_masked_voxels_over_items_and_iterations_in_an_engine():
    batches = [[_item(2.0, 4), _item(1.0, 12)], [_item(3.0, 2)]]  # decollated items, as MONAI evaluators give them
    engine = Engine(lambda e, batch: batch)
    MaskedErrorMetric("mse", output_transform=from_engine(["pred", "label"])).attach(engine, "err")
    MaskedErrorMetric("l1", output_transform=from_engine(["pred", "label"])).attach(engine, "l1")
    # a prediction of half the value: error (v / 2)^2 against v^2 for the zero-filled input
    half = [[{**it, "pred": it["label"][:1] / 2} for it in b] for b in batches]
    MaskedGainMetric(output_transform=from_engine(["pred", "label", "image"])).attach(engine, "gain")
    state = engine.run([batches[0], batches[1]])
    assert state.metrics["err"] == pytest.approx((4 * 4 + 12 * 1 + 2 * 9) / 18)
    assert state.metrics["l1"] == pytest.approx((4 * 2 + 12 * 1 + 2 * 3) / 18)
    assert state.metrics["gain"] == pytest.approx(0.0), "a zero prediction is no better than the zero-filled input"
    assert engine.run(half).metrics["gain"] == pytest.approx(0.75)


def test_nothing_masked_is_not_computable_and_bad_outputs_are_named():
    m = MaskedErrorMetric()
    m.update(([torch.zeros(1, 2, 2)], [torch.zeros(2, 2, 2)]))
    with pytest.raises(NotComputableError, match="no masked voxel"):
        m.compute()
    with pytest.raises(ValueError, match=r"C \+ 1"):
        m.update(([torch.zeros(1, 2, 2)], [torch.zeros(1, 2, 2)]))
    with pytest.raises(ValueError, match=r"takes \(pred, label, image\)"):
        MaskedGainMetric().update(([torch.zeros(1, 2, 2)], [torch.zeros(2, 2, 2)]))
    with pytest.raises(ValueError, match="kind must be"):
        MaskedGainMetric("huber")
