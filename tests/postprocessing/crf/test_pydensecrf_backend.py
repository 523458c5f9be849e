"""The ``"pydensecrf"`` backend (``crf.pydensecrf_backend``) and the native backend against it."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from postprocessing.crf.crf_testing import VNC_SPACING, needs_pydensecrf, noisy_probabilities, vnc_crop

from cseg_monai.postprocessing.crf import CRFParams, DenseCRF, have_pydensecrf


@pytest.fixture(scope="module")
def crop():
    return vnc_crop()


@needs_pydensecrf
def test_native_agrees_with_pydensecrf_on_a_real_3d_crop(crop):
    image, label, prob = crop
    for compat in ("potts", "organelle"):
        params = CRFParams(
            iterations=5, smoothness_weight=3, smoothness_sigma=10.0, appearance_weight=5,
            appearance_sigma=40.0, intensity_sigma=10.0, compatibility=compat,
        )  # fmt: skip
        native = DenseCRF(params, backend="native").labels(prob, image, VNC_SPACING)
        reference = DenseCRF(params, backend="pydensecrf").labels(prob, image, VNC_SPACING)
        agreement = (native == reference).mean()
        assert agreement >= 0.98, (compat, agreement)
        # both improve on the noisy input by the same amount, give or take
        before = (prob.argmax(0) == label).mean()
        assert (native == label).mean() > before + 0.2
        assert abs((native == label).mean() - (reference == label).mean()) < 0.01
    # narrow widths (appearance 2 pixels in-plane, intensity 8 grey levels): the lattice, pydensecrf's own filter
    params = CRFParams(iterations=5, smoothness_weight=0, appearance_weight=5, appearance_sigma=9.2, intensity_sigma=8.0)
    native = DenseCRF(params, backend="native").labels(prob, image, VNC_SPACING)
    reference = DenseCRF(params, backend="pydensecrf").labels(prob, image, VNC_SPACING)
    assert (native == reference).mean() >= 0.999


@needs_pydensecrf
def test_pydensecrf_backend_2d_and_marginals():
    truth = np.zeros((40, 40), int)
    truth[8:30, 5:25] = 1
    prob = noisy_probabilities(truth, 2, seed=5, signal=1.5, noise=1.0)
    image = np.where(truth == 1, 170, 40).astype(np.uint8)
    params = CRFParams(smoothness_sigma=1.0, appearance_sigma=8.0, intensity_sigma=15.0)
    q = DenseCRF(params, backend="pydensecrf")(prob, image)
    assert q.shape == prob.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)
    native = DenseCRF(params).labels(prob, image)
    assert (q.argmax(0) == native).mean() > 0.98


def test_missing_pydensecrf_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_pydensecrf(name, *args, **kwargs):
        if name.startswith("pydensecrf"):
            raise ImportError("no pydensecrf here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydensecrf)
    assert not have_pydensecrf()
    with pytest.raises(ImportError, match="scripts/setup.sh crf"):
        DenseCRF(backend="pydensecrf").labels(np.full((2, 4, 4), 0.5, np.float32), np.zeros((4, 4)))
