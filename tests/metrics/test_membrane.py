"""Tests of cseg_monai.metrics.membrane with hand-computed answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import thin as skimage_thin

from cseg_monai.metrics import (
    DEFAULT_THRESHOLDS,
    dice_score,
    info_scores,
    isbi_scores,
    isbi_scores_per_threshold,
    membrane_to_segmentation,
    pixel_error,
    rand_scores,
)
from cseg_monai.metrics.membrane import _thin2d

from conftest import require_data

REPO = Path(__file__).resolve().parents[2]


def _halves() -> tuple[np.ndarray, np.ndarray]:
    """4 x 4 ground truth: left half label 1 (8 px), right half label 2 (8 px)."""
    gt = np.ones((4, 4), dtype=np.int32)
    gt[:, 2:] = 2
    return gt, np.ones((4, 4), dtype=np.int32)


def _reference_scores(seg: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Brute-force V_rand / V_info: relabel seg==0 foreground pixels as singletons, dense table."""
    fg = gt > 0
    s = seg[fg].astype(np.int64)
    g = gt[fg].astype(np.int64)
    zero = s == 0
    s[zero] = s.max() + 1 + np.arange(zero.sum())  # each its own segment
    _, s = np.unique(s, return_inverse=True)
    _, g = np.unique(g, return_inverse=True)
    table = np.zeros((s.max() + 1, g.max() + 1))
    np.add.at(table, (s, g), 1)
    p = table / fg.sum()
    ps, pt = p.sum(1), p.sum(0)
    split, merge = (p**2).sum() / (pt**2).sum(), (p**2).sum() / (ps**2).sum()
    v_rand = 2 * split * merge / (split + merge)

    def h(x: np.ndarray) -> float:
        x = x[x > 0]
        return float(-(x * np.log(x)).sum())

    hs, ht, hst = h(ps), h(pt), h(p.ravel())
    mi = hs + ht - hst
    si = 1.0 if hs == 0 else mi / hs
    mg = 1.0 if ht == 0 else mi / ht
    v_info = 0.0 if si + mg == 0 else 2 * si * mg / (si + mg)
    return v_rand, v_info


# --------------------------------------------------------------------------- pixel metrics
def test_pixel_error_small():
    pred = np.array([[1, 0, 0], [1, 1, 0]])
    target = np.array([[1, 1, 0], [0, 1, 0]])
    # differs at (0,1) and (1,0): 2 of 6 pixels
    assert pixel_error(pred, target) == pytest.approx(2 / 6)
    assert pixel_error(target, target) == 0.0
    assert pixel_error(pred.astype(bool), (1 - pred).astype(np.float32)) == 1.0


def test_dice_small():
    pred = np.array([[1, 0, 0], [1, 1, 0]])
    target = np.array([[1, 1, 0], [0, 1, 0]])
    # |P| = 3, |T| = 3, |P & T| = 2 -> 2 * 2 / 6
    assert dice_score(pred, target) == pytest.approx(4 / 6)
    assert dice_score(target, target) == 1.0
    assert dice_score(np.zeros((2, 2)), np.ones((2, 2))) == 0.0
    assert dice_score(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert dice_score(np.zeros((2, 2)), np.zeros((2, 2)), empty_score=0.0) == 0.0
    assert isinstance(dice_score(pred, target), float)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: pixel_error(np.zeros((2, 2)), np.zeros((2, 3))), r"shape mismatch.*\(2, 2\).*\(2, 3\)"),
        (lambda: dice_score(np.array([[0, 2]]), np.array([[0, 1]])), r"pred_mask is not binary.*\[2\]"),
        (lambda: pixel_error(np.array([[0.0, np.nan]]), np.zeros((1, 2))), r"pred_mask contains NaN"),
        (lambda: pixel_error(np.zeros((0, 3)), np.zeros((0, 3))), r"pred_mask is empty"),
        (lambda: membrane_to_segmentation(np.array([[0, 0.5]])), r"membrane_mask is not binary"),
        (lambda: membrane_to_segmentation(np.zeros(5)), r"membrane_mask must be 2D \(Y, X\) or 3D"),
        (lambda: rand_scores(np.zeros((2, 2)), np.zeros((2, 2), int)), r"seg must be an integer label array"),
        (lambda: info_scores(np.zeros((2, 2), int), -np.ones((2, 2), int)), r"gt holds negative labels"),
        (lambda: rand_scores(np.zeros((2, 2), int), np.zeros((3, 2), int)), r"shape mismatch"),
        (lambda: info_scores(np.zeros((0,), int), np.zeros((0,), int)), r"seg is empty"),
        (lambda: isbi_scores(np.full((4, 4), np.nan), np.zeros((4, 4))), r"prob contains NaN"),
        (lambda: isbi_scores(np.full((4, 4), 1.5), np.zeros((4, 4))), r"prob holds values outside \[0, 1\]"),
        (lambda: isbi_scores(np.full((4, 4), -0.1), np.zeros((4, 4))), r"outside \[0, 1\] \(min -0.1"),
        (lambda: isbi_scores(np.zeros((4, 4)), np.full((4, 4), 3)), r"target is not binary"),
        (lambda: isbi_scores(np.zeros((4, 4)), np.zeros((4, 5))), r"shape mismatch: prob has shape \(4, 4\)"),
        (lambda: isbi_scores(np.zeros((4, 4)), np.zeros((4, 4)), thresholds=[]), r"thresholds must be a non-empty"),
        (lambda: isbi_scores(np.zeros((4, 4)), np.zeros((4, 4)), thresholds=[0.5, 2]), r"thresholds must lie in"),
        (lambda: isbi_scores(np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2))), r"prob must be 2D"),
        (lambda: isbi_scores(np.zeros((0, 4)), np.zeros((0, 4))), r"prob is empty"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- segmentation
def test_membrane_to_segmentation_4_connectivity():
    # a diagonal (8-connected) membrane separates 4-connected regions: 2 regions, not 1
    m = np.array(
        [
            [0, 0, 1],
            [0, 1, 0],
            [1, 0, 0],
        ]
    )
    seg = membrane_to_segmentation(m)
    assert seg.dtype == np.int32
    assert (seg[m == 1] == 0).all()
    assert sorted(np.unique(seg[m == 0]).tolist()) == [1, 2]
    assert seg[0, 0] != seg[2, 2]
    assert seg[0, 0] == seg[0, 1] == seg[1, 0]
    assert seg[1, 2] == seg[2, 1] == seg[2, 2]


def test_membrane_to_segmentation_stack_ids_unique_per_slice():
    m = np.zeros((2, 3, 5), dtype=np.uint8)
    m[0, :, 2] = 1  # slice 0: two regions
    # slice 1: one region
    seg = membrane_to_segmentation(m)
    assert seg.shape == m.shape and seg.dtype == np.int32
    assert np.unique(seg[0]).tolist() == [0, 1, 2]
    assert np.unique(seg[1]).tolist() == [3]  # offset past slice 0's ids
    # each slice labelled on its own: equal to the 2D result up to the offset
    np.testing.assert_array_equal(seg[0], membrane_to_segmentation(m[0]))


@pytest.mark.parametrize("density", [0.1, 0.35, 0.6, 0.9])
def test_thinning_identical_to_skimage(density):
    rng = np.random.default_rng(int(density * 100))
    for shape in [(1, 9), (9, 1), (3, 3), (17, 23), (64, 48)]:
        mask = ndi.binary_dilation(rng.random(shape) < density / 4) | (rng.random(shape) < density)
        np.testing.assert_array_equal(_thin2d(mask), skimage_thin(mask), err_msg=f"{shape}")
    assert not _thin2d(np.zeros((4, 4), bool)).any()


def test_thinning_makes_3px_ring_1px_and_changes_v_rand():
    # 11 x 11 image; gt membrane = the 1-px outline of box [2..8]^2,
    # prediction = a 3-px-thick ring: box [1..9]^2 minus box [4..6]^2.
    gt = np.zeros((11, 11), dtype=bool)
    gt[2:9, 2:9] = True
    gt[3:8, 3:8] = False
    pred = np.zeros((11, 11), dtype=bool)
    pred[1:10, 1:10] = True
    pred[4:7, 4:7] = False

    # Without thinning. gt regions: inside I = box [3..7]^2 = 25 px, outside O = 121 - 49 = 72 px
    # (N = 97). pred regions: inner 3x3 = 9 px (in I), outer 121 - 81 = 40 px (in O); the other
    # 32 + 16 = 48 foreground pixels are pred membrane -> singletons.
    # sum n_ij^2 = 40^2 + 9^2 + 48 = 1729 = sum s_i^2 (no merges); sum t_j^2 = 72^2 + 25^2 = 5809.
    r = rand_scores(membrane_to_segmentation(pred), membrane_to_segmentation(gt))
    assert r["split"] == pytest.approx(1729 / 5809)
    assert r["merge"] == 1.0
    assert r["v_rand"] == pytest.approx(2 * (1729 / 5809) / (1 + 1729 / 5809))

    # Thinning: the 3-px ring becomes a 1-px (8-connected) ring.
    thinned = membrane_to_segmentation(pred, thin=True) == 0
    expected = np.zeros((11, 11), dtype=bool)
    expected[2, 3:7] = expected[8, 3:7] = True  # top / bottom: 4 px each
    expected[3:8, 2] = True  # left: 5 px
    expected[4:7, 8] = True  # right: 3 px
    expected[3, 7] = expected[7, 7] = True  # diagonal corners on the right
    np.testing.assert_array_equal(thinned, expected)
    assert np.all(ndi.binary_erosion(thinned) == 0)  # nowhere thicker than one pixel
    gt_thinned = membrane_to_segmentation(gt, thin=True) == 0
    assert gt_thinned.sum() == 20  # the gt outline loses its 4 corner pixels (they join O)

    # With thinning. gt: I = 25 px, O = 121 - 20 - 25 = 76 px. pred inner region = 23 px, all in I;
    # (3,7) and (7,7) are pred membrane inside I -> 2 singletons; pred outer region covers O (76).
    # sum n_ij^2 = 23^2 + 76^2 + 2 = 6307 = sum s_i^2; sum t_j^2 = 25^2 + 76^2 = 6401.
    r = rand_scores(membrane_to_segmentation(pred, thin=True), membrane_to_segmentation(gt, thin=True))
    assert r["split"] == pytest.approx(6307 / 6401)
    assert r["merge"] == 1.0
    assert r["v_rand"] == pytest.approx(2 * (6307 / 6401) / (1 + 6307 / 6401))


# --------------------------------------------------------------------------- Rand
def test_rand_identical_is_one():
    gt, _ = _halves()
    assert rand_scores(gt, gt) == {"v_rand": 1.0, "split": 1.0, "merge": 1.0}
    # label ids do not matter, only the partition
    assert rand_scores(np.where(gt == 1, 7, 3), gt)["v_rand"] == 1.0
    # one segment against one segment
    one = np.ones((3, 3), int)
    assert rand_scores(one, one)["v_rand"] == 1.0


def test_rand_merge_by_hand():
    gt, merged = _halves()
    # p_ij counts: (1, 1) = 8, (1, 2) = 8. sum n_ij^2 = 128, sum t^2 = 64 + 64 = 128,
    # sum s^2 = 16^2 = 256 -> split = 1, merge = 0.5, v_rand = 2 * 0.5 / 1.5 = 2/3
    r = rand_scores(merged, gt)
    assert r["split"] == 1.0
    assert r["merge"] == 0.5
    assert r["v_rand"] == pytest.approx(2 / 3)


def test_rand_split_by_hand():
    gt, merged = _halves()
    # swap roles: gt one region of 16, prediction two halves -> split = 0.5, merge = 1
    r = rand_scores(gt, merged)
    assert r["split"] == 0.5
    assert r["merge"] == 1.0
    assert r["v_rand"] == pytest.approx(2 / 3)


def test_rand_partial_overlap_by_hand():
    gt, _ = _halves()  # columns 0-1 -> 1, columns 2-3 -> 2
    seg = np.ones((4, 4), int)
    seg[:, 3] = 2  # columns 0-2 (12 px) and column 3 (4 px)
    # cells: (1,1) = 8, (1,2) = 4, (2,2) = 4 -> sum n^2 = 96; sum s^2 = 144 + 16 = 160;
    # sum t^2 = 128 -> split = 0.75, merge = 0.6, v_rand = 0.9 / 1.35 = 2/3
    r = rand_scores(seg, gt)
    assert r["split"] == pytest.approx(0.75)
    assert r["merge"] == pytest.approx(0.6)
    assert r["v_rand"] == pytest.approx(2 / 3)


def test_rand_seg_zero_pixels_are_singletons():
    gt = np.ones((4, 4), int)  # one gt segment of 16 px
    seg = np.ones((4, 4), int)
    seg[0, :] = 0  # 4 boundary pixels inside the gt foreground
    # singleton cells: sum n^2 = 12^2 + 4 * 1 = 148 = sum s^2; sum t^2 = 256
    # split = 148 / 256 = 0.578125, merge = 1
    r = rand_scores(seg, gt)
    assert r["split"] == pytest.approx(148 / 256)
    assert r["merge"] == 1.0
    # had they been ONE segment: (144 + 16) / 256 = 0.625 -- must differ
    assert r["split"] != pytest.approx(160 / 256)
    assert r["v_rand"] == pytest.approx(2 * 0.578125 / 1.578125)


def test_gt_background_is_ignored():
    gt, merged = _halves()
    gt_bg = gt.copy()
    gt_bg[0, :] = 0  # these pixels do not count, whatever the proposal does there
    seg = merged.copy()
    seg[0, :] = [5, 6, 0, 7]
    # foreground: 6 px of label 1, 6 px of label 2, all in proposal segment 1:
    # merge = (36 + 36) / 144 = 0.5, split = 1
    r = rand_scores(seg, gt_bg)
    assert (r["split"], r["merge"]) == (1.0, 0.5)
    # empty foreground: nothing to score -> 1.0 by convention
    assert rand_scores(seg, np.zeros_like(gt)) == {"v_rand": 1.0, "split": 1.0, "merge": 1.0}
    assert info_scores(seg, np.zeros_like(gt)) == {"v_info": 1.0, "split": 1.0, "merge": 1.0}


def test_large_label_ids_are_compacted():
    gt, _ = _halves()
    seg = np.ones((4, 4), np.int64)
    seg[:, 3] = 2
    big = np.where(seg == 1, 2**40, 2**50).astype(np.int64)
    assert rand_scores(big, gt) == rand_scores(seg, gt)
    assert info_scores(big, gt.astype(np.int64) * 10**12) == info_scores(seg, gt)


# --------------------------------------------------------------------------- information
def test_info_identical_is_one():
    gt, merged = _halves()
    assert info_scores(gt, gt)["v_info"] == pytest.approx(1.0, abs=1e-12)
    # H(S) = H(T) = 0 (one segment each) is a perfect match too
    assert info_scores(merged, merged) == {"v_info": 1.0, "split": 1.0, "merge": 1.0}


def test_info_merge_and_split_by_hand():
    gt, merged = _halves()
    # merge: H(S) = 0, H(T) = ln 2, I(S;T) = 0 -> split = 1 (H(S) = 0 convention),
    # merge = I / H(T) = 0, v_info = 0
    assert info_scores(merged, gt) == {"v_info": 0.0, "split": 1.0, "merge": 0.0}
    # split: H(S) = ln 2, H(T) = 0, I = 0 -> split = 0, merge = 1, v_info = 0
    assert info_scores(gt, merged) == {"v_info": 0.0, "split": 0.0, "merge": 1.0}


def test_info_partial_overlap_by_hand():
    gt, _ = _halves()
    seg = np.ones((4, 4), int)
    seg[:, 3] = 2
    # p: (1,1) = 1/2, (1,2) = 1/4, (2,2) = 1/4; s = (3/4, 1/4); t = (1/2, 1/2)
    # H(T) = ln 2; H(S) = 3/4 ln(4/3) + 1/4 ln 4 = 2 ln 2 - 3/4 ln 3;
    # H(S,T) = 1/2 ln 2 + 2 * 1/4 ln 4 = 3/2 ln 2; I = H(S) + H(T) - H(S,T) = 3/2 ln 2 - 3/4 ln 3
    ln2, ln3 = math.log(2), math.log(3)
    h_s = 2 * ln2 - 0.75 * ln3
    mi = 1.5 * ln2 - 0.75 * ln3
    split, merge = mi / h_s, mi / ln2  # ~0.4308, ~0.3113
    r = info_scores(seg, gt)
    assert r["split"] == pytest.approx(split)
    assert r["merge"] == pytest.approx(merge)
    assert r["v_info"] == pytest.approx(2 * split * merge / (split + merge))


def test_info_singletons_by_hand():
    gt = np.ones((4, 4), int)
    seg = np.ones((4, 4), int)
    seg[0, :] = 0
    # H(T) = 0 -> merge = 1; I = 0 (T is constant) -> split = 0 / H(S) = 0 -> v_info = 0
    assert info_scores(seg, gt) == {"v_info": 0.0, "split": 0.0, "merge": 1.0}
    gt2, _ = _halves()
    seg2 = np.ones((4, 4), int)
    seg2[:, 1:3] = 0  # columns 1, 2 are boundary: 8 singletons
    seg2[:, 3] = 2
    # S: segment 1 = column 0 (4 px, in gt 1), segment 2 = column 3 (4 px, in gt 2), 8 singletons
    # H(S) = 2 * (1/4) ln 4 + 8 * (1/16) ln 16 = ln 2 + 2 ln 2 = 3 ln 2; H(T) = ln 2;
    # H(S,T) = H(S) (S refines T) -> I = ln 2; split = 1/3, merge = 1, v_info = (2/3) / (4/3) = 0.5
    r = info_scores(seg2, gt2)
    assert r["split"] == pytest.approx(1 / 3)
    assert r["merge"] == pytest.approx(1.0)
    assert r["v_info"] == pytest.approx(0.5)


def test_scores_match_bruteforce_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        gt = rng.integers(0, 5, size=(12, 9))
        seg = rng.integers(0, 4, size=(12, 9))
        v_rand, v_info = _reference_scores(seg, gt)
        assert rand_scores(seg, gt)["v_rand"] == pytest.approx(v_rand, abs=1e-12)
        assert info_scores(seg, gt)["v_info"] == pytest.approx(v_info, abs=1e-12)
    # many labels (1600 x 1600 table > 1M cells): the table is built from the pixel pairs directly
    seg = rng.permutation(40 * 40).reshape(40, 40) + 1
    seg[rng.random(seg.shape) < 0.1] = 0
    gt = rng.permutation(40 * 40).reshape(40, 40)
    v_rand, v_info = _reference_scores(seg, gt)
    assert rand_scores(seg, gt)["v_rand"] == pytest.approx(v_rand, abs=1e-12)
    assert info_scores(seg, gt)["v_info"] == pytest.approx(v_info, abs=1e-12)


# --------------------------------------------------------------------------- ISBI
def _two_column_case() -> tuple[np.ndarray, np.ndarray]:
    """5 x 7 image; gt membrane = column 3 (gt regions: columns 0-2 and 4-6, 15 px each).

    prob: 0.6 on the true membrane, 0.3 on a false membrane at column 5, 0.1 elsewhere.
    """
    target = np.zeros((5, 7), dtype=np.uint8)
    target[:, 3] = 1
    prob = np.full((5, 7), 0.1)
    prob[:, 3] = 0.6
    prob[:, 5] = 0.3
    return prob, target


def test_isbi_per_threshold_by_hand():
    prob, target = _two_column_case()
    out = isbi_scores_per_threshold(prob, target, thresholds=[0.05, 0.2, 0.5, 0.7], thin=False)
    np.testing.assert_allclose(out["thresholds"], [0.05, 0.2, 0.5, 0.7])
    # t = 0.05: everything is membrane -> 30 singletons: split = 30/450, merge = 1 -> 2/16
    # t = 0.2: membranes at columns 3 and 5 -> regions 15, 5, 5 + 5 singletons in gt R:
    #          sum n^2 = 225 + 25 + 25 + 5 = 280, sum t^2 = 450: split = 28/45 -> v = 56/73
    # t = 0.5: exact -> 1
    # t = 0.7: no membrane -> one region: merge = 450/900 -> v = 2/3
    np.testing.assert_allclose(out["v_rand"], [2 / 16, 56 / 73, 1.0, 2 / 3])
    # V_info at t = 0.05: H(S) = H(S,T) = ln 30, H(T) = ln 2, I = ln 2 -> split = ln2/ln30, merge = 1
    s = math.log(2) / math.log(30)
    # t = 0.2: S refines T; H(S) = 15/30 ln 2 + 2 * 5/30 ln 6 + 5 * 1/30 ln 30, I = H(T) = ln 2
    h_s = 0.5 * math.log(2) + (1 / 3) * math.log(6) + (1 / 6) * math.log(30)
    s2 = math.log(2) / h_s
    np.testing.assert_allclose(out["v_info"], [2 * s / (1 + s), 2 * s2 / (1 + s2), 1.0, 0.0], atol=1e-12)


def test_isbi_scores_picks_best_threshold():
    prob, target = _two_column_case()
    for thin in (False, True):  # 1-px columns spanning the image are unchanged by thinning
        r = isbi_scores(prob, target, thresholds=[0.05, 0.2, 0.5, 0.7], thin=thin)
        assert r == {"v_rand": 1.0, "v_rand_threshold": 0.5, "v_info": 1.0, "v_info_threshold": 0.5}
    # default thresholds: 0.05..0.95; every t in [0.3, 0.55] is exact, the lowest wins ties
    assert len(DEFAULT_THRESHOLDS) == 19
    r = isbi_scores(prob, target)
    assert r["v_rand"] == 1.0 and r["v_rand_threshold"] == 0.3


def test_isbi_stack_mean_over_slices_then_max():
    prob, target = _two_column_case()
    # slice 1 is best at 0.2 (its true membrane has prob 0.3), slice 0 at 0.5
    prob1 = np.full((5, 7), 0.1)
    prob1[:, 3] = 0.3
    stack_p = np.stack([prob, prob1])
    stack_t = np.stack([target, target])
    thr = [0.2, 0.5]
    per = isbi_scores_per_threshold(stack_p, stack_t, thresholds=thr, thin=False)
    assert per["v_rand"].shape == (2, 2)
    # slice 0: t=0.2 -> 56/73, t=0.5 -> 1; slice 1: t=0.2 -> 1, t=0.5 -> one region, 2/3
    np.testing.assert_allclose(per["v_rand"], [[56 / 73, 1.0], [1.0, 2 / 3]])
    r = isbi_scores(stack_p, stack_t, thresholds=thr, thin=False)
    # means: t=0.2 -> (56/73 + 1)/2 = 0.8836; t=0.5 -> (1 + 2/3)/2 = 0.8333 -> 0.2 wins
    assert r["v_rand"] == pytest.approx((56 / 73 + 1) / 2)
    assert r["v_rand_threshold"] == 0.2


# --------------------------------------------------------------------------- real data
def test_real_isbi_label():
    path = require_data("isbi2012", "train", "label", "0.png")
    from PIL import Image

    label = np.asarray(Image.open(path).convert("L"))
    gt = (label == 0).astype(np.uint8)  # 0 = membrane in the ISBI labels
    np.testing.assert_array_equal(_thin2d(gt.astype(bool)), skimage_thin(gt))

    perfect = isbi_scores(gt.astype(float), gt)
    assert perfect["v_rand"] == pytest.approx(1.0, abs=1e-9)
    assert perfect["v_info"] == pytest.approx(1.0, abs=1e-9)

    thick = ndi.binary_dilation(gt, iterations=4).astype(float)  # closes small cells
    thin_ = ndi.binary_erosion(gt, iterations=2).astype(float)  # breaks membranes: merges
    for bad in (thick, thin_):
        r = isbi_scores(bad, gt)
        assert r["v_rand"] < 0.99 and r["v_info"] < 0.99
