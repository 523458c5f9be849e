"""PositiveSimilarityMetric inside a real Ignite engine: pooled over iterations, the loss's own similarity."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from monai.handlers import from_engine

from cseg_monai.metrics import PositiveSimilarityMetric


def _grid(size: int, shift: float = 0.0) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    return torch.stack([ys, xs + shift])[None]


def _output(features: list[torch.Tensor], shift: float = 0.0) -> dict:
    inst = torch.rand(1, 4)
    return {"pred": tuple(features) + (inst,) * 4, "label": torch.cat([_grid(8), _grid(8, shift)], dim=1)}


def test_aligned_features_give_one_and_mixed_batches_pool_over_iterations():
    torch.manual_seed(0)
    f = torch.rand(1, 4, 1, 1).expand(1, 4, 4, 4)  # one feature everywhere: any pair of cells is alike
    opposite = [f, -f, f, -f]  # y1 against t2 = -f, y2 = -f against t1 = f: cosine -1 everywhere
    engine = Engine(lambda e, batch: batch)
    PositiveSimilarityMetric(output_transform=from_engine(["pred", "label"], first=False)).attach(engine, "sim")
    assert engine.run([_output([f] * 4), _output([f] * 4)]).metrics["sim"] == pytest.approx(1.0, abs=1e-5)
    # one iteration all 1, one all -1, with the same number of pairs: the pooled mean is 0
    assert engine.run([_output([f] * 4), _output(opposite)]).metrics["sim"] == pytest.approx(0.0, abs=1e-5)
    # a view shifted by one cell shares 12 of its 16 cells: pooling weights by pairs, not iterations
    pooled = engine.run([_output([f] * 4), _output(opposite, shift=2.0)]).metrics["sim"]
    assert pooled == pytest.approx((32 - 24) / (32 + 24), abs=1e-5)


def test_views_that_never_overlap_are_not_computable():
    engine = Engine(lambda e, batch: batch)
    PositiveSimilarityMetric(output_transform=from_engine(["pred", "label"], first=False)).attach(engine, "sim")
    with pytest.raises(NotComputableError, match="no positive pixel pair"):
        engine.run([_output([torch.rand(1, 4, 4, 4)] * 4, shift=100.0)])
    with pytest.raises(ValueError, match="threshold must be a number > 0"):
        PositiveSimilarityMetric(threshold=-1)


def test_contrast_is_zero_for_a_collapsed_network_and_high_for_distinct_cells():
    engine = Engine(lambda e, batch: batch)
    for measure in ("positive", "other", "contrast"):
        PositiveSimilarityMetric(measure=measure, output_transform=from_engine(["pred", "label"], first=False)).attach(engine, measure)
    collapsed = torch.ones(1, 4, 4, 4)
    m = engine.run([_output([collapsed] * 4)]).metrics
    assert m["positive"] == pytest.approx(1.0) and m["other"] == pytest.approx(1.0) and m["contrast"] == pytest.approx(0.0, abs=1e-6)
    distinct = torch.eye(16).reshape(16, 4, 4)[None]  # a one-hot feature per cell: orthogonal to every other cell
    m = engine.run([_output([distinct] * 4)]).metrics
    assert m["positive"] == pytest.approx(1.0) and m["other"] == pytest.approx(0.0, abs=1e-6) and m["contrast"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="measure must be 'positive', 'other' or 'contrast'"):
        PositiveSimilarityMetric(measure="negative")
