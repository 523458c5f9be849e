"""CREMI cleft scores on cases with known answers, and against brute-force distances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cseg_monai.metrics.cleft import CremiCleftMetric, cremi_cleft_scores

VOXEL = (40.0, 4.0, 4.0)


def _vol(*points, shape=(3, 5, 80)):
    m = np.zeros(shape, bool)
    for p in points:
        m[p] = True
    return m


def test_distances_in_nm_by_hand_and_anisotropy():
    gt = _vol((1, 2, 2))
    s = cremi_cleft_scores(_vol((1, 2, 2), (1, 2, 5)), gt, VOXEL)
    assert s["adf"] == pytest.approx(6.0)  # predicted voxels at 0 and 3 x 4 nm
    assert s["adgt"] == 0.0 and s["cremi_score"] == pytest.approx(3.0)
    assert s["voxel_precision"] == 0.5 and s["voxel_recall"] == 1.0 and s["voxel_f1"] == pytest.approx(2 / 3)
    one_section_up = cremi_cleft_scores(_vol((2, 2, 2)), gt, VOXEL)
    assert one_section_up["adf"] == pytest.approx(40.0) and one_section_up["adgt"] == pytest.approx(40.0)
    diagonal = cremi_cleft_scores(_vol((2, 3, 3)), gt, VOXEL)
    assert diagonal["cremi_score"] == pytest.approx(math.sqrt(40**2 + 4**2 + 4**2))


def test_false_positives_and_negatives_beyond_200_nm():
    gt = _vol((1, 2, 0))
    at_200 = cremi_cleft_scores(_vol((1, 2, 0), (1, 2, 50)), gt, VOXEL)  # 50 x 4 nm = 200: not beyond
    assert at_200["fp"] == 0 and at_200["fn"] == 0
    beyond = cremi_cleft_scores(_vol((1, 2, 51)), gt, VOXEL)
    assert beyond["fp"] == 1 and beyond["fn"] == 1
    assert cremi_cleft_scores(_vol((1, 2, 51)), gt, VOXEL, threshold_nm=300.0)["fp"] == 0


def test_against_brute_force_distances():
    rng = np.random.default_rng(0)
    pred, gt = rng.random((4, 9, 11)) > 0.93, rng.random((4, 9, 11)) > 0.95
    pts_p, pts_g = np.argwhere(pred) * VOXEL, np.argwhere(gt) * VOXEL
    dist = np.sqrt(((pts_p[:, None] - pts_g[None]) ** 2).sum(-1))
    s = cremi_cleft_scores(pred, gt, VOXEL, threshold_nm=30.0)
    assert s["adf"] == pytest.approx(dist.min(1).mean()) and s["adgt"] == pytest.approx(dist.min(0).mean())
    assert s["fp"] == int((dist.min(1) > 30).sum()) and s["fn"] == int((dist.min(0) > 30).sum())


def test_per_cleft_detection():
    gt = _vol((1, 1, slice(2, 6)), (1, 3, slice(40, 44)))  # two clefts
    pred = _vol((1, 1, slice(4, 9)), (0, 4, slice(70, 75)), (2, 0, 20))  # finds one; two false detections
    s = cremi_cleft_scores(pred, gt, VOXEL)
    assert (s["n_gt_clefts"], s["n_pred_clefts"]) == (2, 3)
    assert s["detection_recall"] == 0.5 and s["detection_precision"] == pytest.approx(1 / 3)
    assert s["detection_f1"] == pytest.approx(2 * 0.5 / 3 / (0.5 + 1 / 3))
    pruned = cremi_cleft_scores(pred, gt, VOXEL, min_size=2)  # the lone voxel goes
    assert pruned["n_pred_clefts"] == 2 and pruned["detection_precision"] == 0.5


def test_empty_masks():
    empty, gt = np.zeros((2, 4, 4), bool), _vol((0, 1, 1), shape=(2, 4, 4))
    missed = cremi_cleft_scores(empty, gt, VOXEL)
    assert missed["adgt"] == math.inf and missed["adf"] == 0.0 and missed["fn"] == 1 and missed["detection_recall"] == 0.0
    invented = cremi_cleft_scores(gt, empty, VOXEL)
    assert invented["adf"] == math.inf and invented["fp"] == 1 and invented["detection_precision"] == 0.0
    nothing = cremi_cleft_scores(empty, empty, VOXEL)
    assert nothing["cremi_score"] == 0.0 and nothing["voxel_f1"] == 1.0 and nothing["detection_f1"] == 1.0


def test_bad_inputs():
    m = np.zeros((2, 4, 4), bool)
    with pytest.raises(ValueError, match="same shape"):
        cremi_cleft_scores(m, np.zeros((2, 4, 5), bool), VOXEL)
    with pytest.raises(ValueError, match="0/1 mask.*223"):
        cremi_cleft_scores(m, np.full((2, 4, 4), 223), VOXEL)
    with pytest.raises(ValueError, match="voxel_size_nm"):
        cremi_cleft_scores(m, m, (40.0, 4.0))
    with pytest.raises(ValueError, match="score must be"):
        CremiCleftMetric("auc")


def test_ignite_metric_averages_volumes_and_thresholds_probabilities():
    gt = np.zeros((1, 3, 5, 80), np.float32)
    gt[0, 1, 2, 2] = 1
    far = np.zeros_like(gt)
    far[0, 1, 2, 5] = 0.8
    metric = CremiCleftMetric("cremi_score", voxel_size_nm=VOXEL)
    metric.update(([torch.as_tensor(gt * 0.7)], [torch.as_tensor(gt)]))  # exact: 0
    metric.update((torch.as_tensor(far[None]), torch.as_tensor(gt[None])))  # 12 nm both ways, as a batch
    assert metric.compute() == pytest.approx(6.0) and metric.lower_is_better
    f1 = CremiCleftMetric("voxel_f1", voxel_size_nm=VOXEL, threshold=0.75)
    f1.update(([gt * 0.7], [gt]))  # below the threshold: nothing predicted
    assert f1.compute() == 0.0 and not f1.lower_is_better
