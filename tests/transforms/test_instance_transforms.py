"""LoadInstancesd on real data, RandPoissonNoised, BoundaryToInstancesd and their use together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cseg_monai.data.datasets import instances
from cseg_monai.metrics.instances import InstanceScoresMetric
from cseg_monai.transforms import InstanceTargetsd
from cseg_monai.transforms.instances import BoundaryToInstancesd, LoadInstancesd, RandPoissonNoised
from conftest import data_root, require_data


def test_load_real_nuclei_targets_and_back_to_instances():
    """Real nuclei -> targets (boundary, foreground, weight with the file's spacing) -> treating the
    targets as a perfect prediction -> instances that match the nuclei."""
    require_data("plantseg")
    (item,) = instances.datalist("plantseg_nuclei", data_root(), "val")
    d = LoadInstancesd()(item)
    assert tuple(d["image"].shape) == (1, 30, 100, 100) and d["image"].dtype == torch.float32
    assert d["label"].dtype == torch.int64 and d["spacing"] == pytest.approx([0.28371837, 0.12678642, 0.12678642])
    d = InstanceTargetsd("label", foreground_key="foreground", sigma=1.0)(d)
    prob = np.concatenate([d["boundary"], d["foreground"]]).astype(np.float32)
    prob[0] = np.clip(prob[0] * 0.9 + 0.05, 0, 1)
    out = BoundaryToInstancesd("pred", foreground_channel=1, sigma_seeds=1.0, min_supervoxel_size=10, min_size=30)(
        {"pred": prob, "spacing": d["spacing"]}
    )
    metric = InstanceScoresMetric(score="f1", iou=0.5)
    truth = d["label"].numpy()
    big = np.isin(truth, [i for i, n in zip(*np.unique(truth, return_counts=True)) if i and n >= 100])
    metric.update(([out["instances"]], [np.where(big, truth, 0)]))
    # 14 nuclei of >= 100 voxels in this crop; one merge of two touching nuclei costs 3 points
    assert metric.compute() >= 0.75
    assert metric.items[0]["splits"] == 0 and metric.items[0]["merges"] <= 1


def test_poisson_noise_statistics_and_probability():
    t = RandPoissonNoised("image", prob=1.0, photons_range=(50, 50))
    t.set_random_state(1)
    img = np.full((1, 128, 128), 0.4, np.float32)
    out = t({"image": img})["image"]
    assert abs(out.mean() - 0.4) < 0.01 and abs(out.var() - 0.4 / 50) < 0.001  # Poisson: var = mean / photons
    assert (RandPoissonNoised("image", prob=0.0)({"image": img})["image"] == img).all()
    with pytest.raises(ValueError, match="photons_range"):
        RandPoissonNoised("image", photons_range=(0, 10))


def test_boundary_to_instances_bad_input():
    with pytest.raises(ValueError, match="channel-first \\(C, Z, Y, X\\)"):
        BoundaryToInstancesd("pred")({"pred": np.zeros((8, 8), np.float32)})
    with pytest.raises(ValueError, match="unknown method"):
        BoundaryToInstancesd("pred", method="gasp")
    with pytest.raises(ValueError, match="mask_watershed needs a foreground_channel"):
        BoundaryToInstancesd("pred", mask_watershed=True)


def test_metric_pools_counts_over_items():
    m = InstanceScoresMetric(score="f1", iou=0.5)
    a = np.zeros((1, 4, 8), np.int64)
    a[0, :, :4], a[0, :, 4:] = 1, 2
    m.update(([a, np.zeros_like(a)], [a, a]))  # item 1 perfect (2 TP), item 2 misses both (2 FN)
    assert m.compute() == pytest.approx(2 * 2 / (2 * 2 + 0 + 2))
    voi = InstanceScoresMetric(score="voi")
    voi.update(([a], [a]))
    assert voi.compute() == pytest.approx(0.0, abs=1e-9)


def test_mean_f1_averages_the_pooled_f1_from_iou_half_up():
    a = np.zeros((1, 4, 8), np.int64)
    a[0, :, :4], a[0, :, 4:] = 1, 2
    b = a.copy()
    b[0, 0, :4] = 0  # object 1 loses a quarter: IoU 0.75
    m = InstanceScoresMetric(score="mean_f1", thresholds=(0.1, 0.5, 0.7, 0.8, 0.9))
    m.update(([b], [a]))
    # thresholds >= 0.5: F1 1.0 at 0.5 and 0.7 (both match), 0.5 at 0.8 and 0.9 (only object 2)
    assert m.compute() == pytest.approx((1.0 + 1.0 + 0.5 + 0.5) / 4)
