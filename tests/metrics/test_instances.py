"""Instance matching scores against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.metrics.instances import (
    InstanceScoresMetric,
    detection_scores,
    instance_scores,
    iou_matrix,
    match_at,
    pooled_curve,
)
from cseg_monai.visualisation import f1_iou_plot


def test_iou_matrix_by_hand():
    gt = np.array([[1, 1, 1, 0], [2, 2, 0, 0]])
    pred = np.array([[5, 5, 0, 0], [5, 6, 6, 0]])
    iou, overlap, t_sizes, p_sizes = iou_matrix(gt, pred)
    # gt1 (3 px) & p5 (3 px): 2 shared -> 2/4; gt2 (2 px) & p5: 1 -> 1/4; gt2 & p6 (2 px): 1 -> 1/3
    np.testing.assert_allclose(iou, [[0.5, 0.0], [0.25, 1 / 3]])
    assert t_sizes.tolist() == [3, 2] and p_sizes.tolist() == [3, 2]


def test_matching_is_one_to_one_and_optimal():
    # two predictions both overlap gt 0 at 0.6 and 0.4; the assignment keeps one of them
    iou = np.array([[0.6, 0.4], [0.0, 0.0]])
    assert match_at(iou, 0.3) == (1, 1, 1)
    # at a low threshold the Hungarian assignment maximises the summed IoU: 0.35 + 0.3 beats 0.4 alone
    iou = np.array([[0.4, 0.35], [0.3, 0.0]])
    assert match_at(iou, 0.2) == (2, 0, 0)
    assert match_at(np.zeros((0, 3)), 0.5) == (0, 3, 0)


def test_scores_merges_splits_arand_voi():
    gt = np.zeros((4, 12), np.int64)
    gt[:, 0:4], gt[:, 4:8], gt[:, 8:12] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[:, 0:8] = 1  # merges gt 1 and 2
    pred[0:2, 8:12], pred[2:4, 8:12] = 2, 3  # splits gt 3
    s = instance_scores(gt, pred, thresholds=(0.4, 0.5, 0.6))
    assert s["merges"] == 1 and s["splits"] == 1
    assert s["n_true"] == 3 and s["n_pred"] == 3
    # IoU: pred1-gt1 0.5, pred1-gt2 0.5, pred2-gt3 0.5, pred3-gt3 0.5 -> 2 matches at <= 0.5, none above
    assert s["tp"] == [2, 2, 0] and s["f1"][0] == pytest.approx(2 / 3)
    assert s["arand"] > 0 and s["voi_split"] > 0 and s["voi_merge"] > 0
    perfect = instance_scores(gt, gt * 7)
    assert perfect["f1"] == [1.0] * 9 and perfect["arand"] == pytest.approx(0.0) and perfect["voi"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["merges"] == perfect["splits"] == 0


def test_empty_and_bad_inputs(tmp_path):
    empty = np.zeros((5, 5), np.int64)
    s = instance_scores(empty, empty, thresholds=(0.5,))
    assert s["f1"] == [1.0] and s["n_true"] == 0
    one = empty.copy()
    one[1:3, 1:3] = 4
    assert instance_scores(one, empty, thresholds=(0.5,))["recall"] == [0.0]
    with pytest.raises(ValueError, match="differs from the prediction"):
        instance_scores(empty, np.zeros((5, 4), np.int64))
    with pytest.raises(ValueError, match="integer instance ids"):
        instance_scores(empty, np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match="thresholds must lie in"):
        instance_scores(empty, empty, thresholds=(0.0,))
    path = f1_iou_plot({"a": instance_scores(one, one)}, tmp_path / "f1.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


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


def test_pooled_curve_sums_counts_before_dividing():
    items = [
        {"thresholds": [0.5, 0.75], "tp": [2, 1], "fp": [0, 1], "fn": [0, 1]},
        {"thresholds": [0.5, 0.75], "tp": [0, 0], "fp": [0, 0], "fn": [2, 2]},
    ]
    curve = pooled_curve(items)
    assert curve["f1"] == pytest.approx([4 / 6, 2 / 6])  # not the mean of per-item F1 (0.5 and 0.25)
    assert curve["precision"] == pytest.approx([1.0, 0.5]) and curve["recall"] == pytest.approx([0.5, 0.25])
    assert detection_scores(0, 0, 0) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="share their IoU thresholds"):
        pooled_curve([items[0], {**items[1], "thresholds": [0.5, 0.9]}])
    with pytest.raises(ValueError, match="no items"):
        pooled_curve([])
