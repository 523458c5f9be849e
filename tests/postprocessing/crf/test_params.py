"""CRF parameters, label compatibilities and input checks (``crf.params``)."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.common.constants import ORGANELLE_CLASSES
from cseg_monai.postprocessing import crf
from cseg_monai.postprocessing.crf import CRFParams, DenseCRF, compatibility_matrix, organelle_compatibility
from cseg_monai.postprocessing.crf.params import _ORGANELLE_IMPOSSIBLE, check_crf_inputs


def test_compatibility_presets():
    mu = organelle_compatibility(5.0)
    assert mu.shape == (6, 6) and np.allclose(mu, mu.T) and (np.diag(mu) == 0).all()
    assert mu[2, 1] == 5.0 and mu[2, 3] == 1.0  # mitochondrion next to cell membrane / its own membrane
    assert compatibility_matrix([[0, 2], [2, 0]], 2).dtype == np.float32
    with pytest.raises(ValueError, match="symmetric"):
        compatibility_matrix([[0, 1], [2, 0]], 2)
    with pytest.raises(ValueError, match="3x3 but the probabilities have 2"):
        compatibility_matrix(np.zeros((3, 3)), 2)
    with pytest.raises(ValueError, match="6 classes"):
        compatibility_matrix("organelle", 4)


def test_organelle_preset_uses_the_shared_class_names():
    """The preset's impossible pairs name classes of ``common.constants.ORGANELLE_CLASSES`` (re-exported
    unchanged), and exactly those pairs cost more than Potts."""
    assert crf.ORGANELLE_CLASSES is ORGANELLE_CLASSES
    names = {name for pair in _ORGANELLE_IMPOSSIBLE for name in pair}
    assert names <= set(ORGANELLE_CLASSES), names - set(ORGANELLE_CLASSES)
    mu = organelle_compatibility(4.0)
    costly = {(ORGANELLE_CLASSES[i], ORGANELLE_CLASSES[j]) for i, j in zip(*np.nonzero(mu == 4.0)) if i < j}
    want = {tuple(sorted((a, b), key=ORGANELLE_CLASSES.index)) for a, b in _ORGANELLE_IMPOSSIBLE}
    assert costly == want
    assert mu[ORGANELLE_CLASSES.index("mitochondrion membrane"), ORGANELLE_CLASSES.index("vesicle")] == 4.0
    np.testing.assert_array_equal(compatibility_matrix("organelle", 6), organelle_compatibility())


def test_check_crf_inputs_returns_the_layout():
    prob = np.full((3, 2, 4, 5), 1 / 3, np.float32)
    assert check_crf_inputs(prob, np.zeros((2, 2, 4, 5)), (30.0, 4, 4)) == (3, (2, 4, 5), 2, (30.0, 4.0, 4.0))


def test_params_round_trip_through_a_dict():
    params = CRFParams(iterations=2, intensity_sigma=[4.0, 9.0], compatibility=organelle_compatibility(2.0))
    assert params.intensity_sigma == (4.0, 9.0)  # a list becomes a tuple
    again = CRFParams.from_dict(params.to_dict())
    assert again.to_dict() == params.to_dict() and again.iterations == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iterations": 0}, "iterations must be an integer >= 1"),
        ({"smoothness_sigma": 0.0}, "smoothness_sigma must be a finite number > 0"),
        ({"appearance_weight": float("nan")}, "appearance_weight must be a finite number >= 0"),
        ({"intensity_sigma": (5.0, -1.0)}, "intensity_sigma must be > 0"),
        ({"compatibility": "pots"}, "'potts', 'organelle' or a matrix"),
    ],
)
def test_bad_parameters(changes, message):
    with pytest.raises(ValueError, match=message):
        CRFParams(**changes)


def test_bad_inputs_name_the_input_and_the_problem():
    crf = DenseCRF()
    good = np.full((3, 8, 10), 1 / 3, np.float32)
    image = np.zeros((8, 10), np.uint8)
    with pytest.raises(ValueError, match=r"a\.tif: probabilities must sum to 1.*largest deviation is 0\.5"):
        crf.labels(good * 1.5, image, name="a.tif")
    nan = good.copy()
    nan[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="b.tif: probabilities have NaN"):
        crf.labels(nan, image, name="b.tif")
    with pytest.raises(ValueError, match=r"image shape \(8, 11\) does not match the probabilities' spatial shape \(8, 10\)"):
        crf.labels(good, np.zeros((8, 11)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        crf.labels(np.ones((1, 8, 10), np.float32), image)
    with pytest.raises(ValueError, match="must be floating point"):
        crf.labels(np.ones((2, 8, 10), np.uint8), image)
    with pytest.raises(ValueError, match="spacing must be 2 positive numbers"):
        crf.labels(good, image, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="image has NaN"):
        crf.labels(good, np.full((8, 10), np.nan))
    with pytest.raises(ValueError, match="intensity_sigma has 2 values but the image has 1 channel"):
        DenseCRF(CRFParams(intensity_sigma=(1.0, 2.0))).labels(good, image)
    with pytest.raises(ValueError, match="unknown CRF backend 'densecrf'"):
        DenseCRF(backend="densecrf")
    with pytest.raises(ValueError, match=r"unknown CRF parameter\(s\) \['sxy'\]"):
        DenseCRF({"sxy": 3})
