"""Tracing scores against hand counts: links, splits and merges, runs."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.metrics.tracing import section_profiles_of, tracing_scores


def _tube(z: int = 6) -> np.ndarray:
    truth = np.zeros((z, 12, 20), np.int64)
    truth[:, 2:6, 2:6] = 1
    truth[:, 7:11, 10:14] = 2
    return truth


def test_a_perfect_trace():
    truth = _tube()
    s = tracing_scores(truth, truth * 3)  # ids need not be equal, only consistent
    assert s["link_f1"] == 1.0 and s["n_true_links"] == 10 and s["splits"] == s["merges"] == 0
    assert s["expected_run_length"] == 6.0 and s["arand"] == 0.0


def test_a_split_and_a_merge_by_hand():
    truth = _tube()
    pred = truth.copy()
    pred[3:][truth[3:] == 1] = 5  # object 1 split after section 2: one link of 5 lost
    s = tracing_scores(truth, pred)
    assert s["splits"] == 1 and s["merges"] == 0
    assert s["link_recall"] == pytest.approx(9 / 10) and s["link_precision"] == 1.0
    assert s["expected_run_length"] == pytest.approx((3**2 + 3**2 + 6**2) / 12)  # runs 3, 3 (object 1) and 6 (object 2)
    merged = np.where(truth > 0, 1, 0)
    m = tracing_scores(truth, merged)
    assert m["merges"] == 1 and m["splits"] == 0 and m["link_precision"] == 1.0  # links within each object still hold
    assert m["arand"] > 0.3 and m["n_pred"] == 1


def test_a_branch_has_two_links_between_two_sections():
    truth = np.zeros((2, 10, 10), np.int64)
    truth[0, 2:8, 2:8] = 4
    truth[1, 2:4, 2:8] = 4
    truth[1, 6:8, 2:8] = 4  # two profiles of one object in section 1
    assert section_profiles_of(truth)[1].max() == 2
    s = tracing_scores(truth, truth)
    assert s["n_true_links"] == 2 and s["link_f1"] == 1.0


def test_crumbs_can_be_left_out_and_bad_input_is_refused():
    truth = _tube()
    truth[2, 0, 19] = 1  # a one-pixel crumb of object 1, cut off from its profile
    assert tracing_scores(truth, truth)["n_true_links"] == 10  # it overlaps nothing in sections 1 and 3
    with pytest.raises(ValueError, match="one shape"):
        tracing_scores(truth, truth[:2])
    with pytest.raises(ValueError, match="non-negative integer"):
        tracing_scores(truth, -truth)
    with pytest.raises(ValueError, match="min_profile_area"):
        tracing_scores(truth, truth, min_profile_area=-1)


def test_the_ignite_metric_averages_items_and_shares_one_computation():
    from cseg_monai.metrics import TracingScoresMetric

    truth = _tube()[None]
    split = truth.copy()
    split[0, 3:][truth[0, 3:] == 1] = 5
    f1, arand = TracingScoresMetric("link_f1"), TracingScoresMetric("arand")
    for m in (f1, arand):
        m.update(([truth, split], [truth, truth]))
    assert f1.compute() == pytest.approx((1.0 + 2 * 0.9 * 1.0 / 1.9) / 2)
    assert 0.0 < arand.compute() < 1.0
    with pytest.raises(ValueError, match="score"):
        TracingScoresMetric("dice")


def test_expected_run_length_counts_wrong_profiles_as_zero():
    """Two objects over 4 sections; object 2 merged into object 1 in sections 2-3: runs 4 and 2 of 8 profiles."""
    truth = np.zeros((4, 12, 20), np.int64)
    truth[:, 2:6, 2:6] = 1
    truth[:, 7:11, 10:14] = 2
    pred = truth.copy()
    pred[2:][truth[2:] == 2] = 1
    assert tracing_scores(truth, pred)["expected_run_length"] == pytest.approx((16 + 4) / 8)
    missed = truth.copy()
    missed[2:][truth[2:] == 2] = 0
    assert tracing_scores(truth, missed)["expected_run_length"] == pytest.approx((16 + 4) / 8)
    big = truth * 1_000_000_007  # body ids of connectomics size
    assert tracing_scores(big, big)["link_f1"] == 1.0
