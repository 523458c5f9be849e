"""Random search of the CRF parameters (``crf.fitting``) on small synthetic probabilities and labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from postprocessing.crf.crf_testing import noisy_probabilities

from cseg_monai.postprocessing.crf import CRFParams, DenseCRF, organelle_compatibility
from cseg_monai.postprocessing.crf.fitting import SEARCH_SPACE, random_search, sample_params, score_params


def two_region_item(seed: int = 0, size: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image (1, Y, X), prob (2, Y, X), label (Y, X))``: two halves, clean image, noisy probabilities."""
    label = np.zeros((size, size), np.int64)
    label[:, size // 2 :] = 1
    image = np.where(label == 1, 0.8, 0.2)[None].astype(np.float32)
    return image, noisy_probabilities(label, 2, seed=seed, signal=1.0, noise=1.0), label


def test_sample_params_stays_in_the_search_space():
    rng = np.random.default_rng(0)
    for _ in range(50):
        params, drawn = sample_params(rng, n_classes=6)
        for name, spec in SEARCH_SPACE.items():
            if name == "impossible_cost":
                assert drawn[name] in spec[1]
            elif spec[0] == "choice":
                assert drawn[name] in spec[1] and getattr(params, name) == drawn[name]
            else:
                assert spec[1] <= drawn[name] <= spec[2] and getattr(params, name) == drawn[name], name
        if drawn["impossible_cost"] is None:
            assert params.compatibility == "potts"
        else:
            assert np.array_equal(params.compatibility, organelle_compatibility(drawn["impossible_cost"]).tolist())


def test_sample_params_is_reproducible_and_log_uniform():
    a = [sample_params(np.random.default_rng(7), 2)[1] for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(1)
    widths = np.array([sample_params(rng, 2)[1]["appearance_sigma"] for _ in range(400)])
    low, high = SEARCH_SPACE["appearance_sigma"][1:]
    # log-uniform: about half the draws fall below the geometric mean (the arithmetic mean is far higher)
    assert 0.4 < (widths < math.sqrt(low * high)).mean() < 0.6
    assert (widths < (low + high) / 2).mean() > 0.7


def test_organelle_compatibility_only_for_six_classes():
    space = {"impossible_cost": ("choice", (6.0,)), "iterations": ("uniform", 2, 2)}
    with pytest.raises(ValueError, match="integer"):  # a float iteration count is rejected by CRFParams
        sample_params(np.random.default_rng(0), 6, space)
    space = {"impossible_cost": ("choice", (6.0,)), "iterations": ("choice", (2,))}
    params, drawn = sample_params(np.random.default_rng(0), 6, space)
    assert drawn == {"iterations": 2, "impossible_cost": 6.0}
    assert params.compatibility == organelle_compatibility(6.0).tolist()
    params, drawn = sample_params(np.random.default_rng(0), 2, space)
    assert params.compatibility == "potts" and drawn["impossible_cost"] is None
    with pytest.raises(ValueError, match="unknown search-space kind 'normal'"):
        sample_params(np.random.default_rng(0), 2, {"iterations": ("normal", 1, 2)})


def test_score_params_of_the_argmax_skips_unlabelled_voxels():
    prob = np.array([[[0.9, 0.2, 0.6, 0.7]], [[0.1, 0.8, 0.4, 0.3]]], np.float32)  # argmax 0, 1, 0, 0
    label = np.array([[0, 1, 1, 0]])
    scores = score_params(None, [(np.zeros((1, 1, 4)), prob, label)], n_classes=2)
    # class 0: F1 4/5, class 1: F1 2/3; kappa (0.75 - 0.5) / (1 - 0.5)
    assert scores == pytest.approx({"accuracy": 0.75, "macro_f1": (0.8 + 2 / 3) / 2, "kappa": 0.5})
    unlabelled = np.array([[0, 1, 255, 0]])  # the one mistake is unlabelled
    assert score_params(None, [(np.zeros((1, 1, 4)), prob, unlabelled)], 2)["accuracy"] == 1.0
    # items are pooled: the second item's four voxels count as much as the first's
    both = score_params(None, [(np.zeros((1, 1, 4)), prob, label), (np.zeros((1, 1, 4)), prob, unlabelled)], 2)
    assert both["accuracy"] == pytest.approx(6 / 7)


def test_score_params_runs_the_crf():
    item = two_region_item(seed=2)
    before = score_params(None, [item], 2)
    after = score_params(DenseCRF(CRFParams(appearance_sigma=6.0, intensity_sigma=0.1), device="cpu"), [item], 2)
    assert after["accuracy"] > before["accuracy"] and after["accuracy"] > 0.97


def test_random_search_scores_no_crf_the_start_and_the_draws():
    items = [two_region_item(seed=s) for s in (0, 1)]
    start = CRFParams(iterations=3, appearance_sigma=6.0, intensity_sigma=0.1)
    lines: list[str] = []
    best, trials = random_search(items, n_classes=2, n_trials=3, seed=4, start=start, objective="kappa", log=lines.append)
    assert [t["name"] for t in trials] == ["no_crf", "start", "trial_000", "trial_001", "trial_002"]
    assert trials[0]["params"] is None and trials[1]["params"] == start.to_dict()
    assert len(lines) == 5 and lines[0].startswith("no_crf: kappa")
    assert best is max(trials, key=lambda t: t["kappa"])
    assert best["kappa"] >= trials[0]["kappa"]  # never worse than no CRF on the fitting data
    assert trials[1]["kappa"] > trials[0]["kappa"]  # the start parameters do clean up the noise
    for trial in trials[2:]:  # the drawn parameters are the ones scored
        assert CRFParams.from_dict(trial["params"]).to_dict() == trial["params"]
        assert trial["params"]["smoothness_weight"] == trial["drawn"]["smoothness_weight"]
    again = random_search(items, n_classes=2, n_trials=3, seed=4, start=start, objective="kappa")[1]
    assert [t["drawn"] for t in again] == [t["drawn"] for t in trials]
    assert [t["kappa"] for t in again] == [t["kappa"] for t in trials]


def test_random_search_rejects_bad_arguments():
    items = [two_region_item()]
    with pytest.raises(ValueError, match="objective must be"):
        random_search(items, 2, n_trials=0, objective="dice")
    with pytest.raises(ValueError, match="no validation items"):
        random_search([], 2)
    with pytest.raises(ValueError, match="n_trials must be an integer >= 0"):
        random_search(items, 2, n_trials=-1)
    best, trials = random_search(items, 2, n_trials=0)
    assert [t["name"] for t in trials] == ["no_crf", "start"] and best in trials
