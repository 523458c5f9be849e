"""Mean-field inference (``crf.mean_field``): its energy, known Potts answers, the appearance kernel's effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from postprocessing.crf.crf_testing import VNC_SPACING, vnc_crop

from cseg_monai.postprocessing.crf import CRFParams, DenseCRF, mean_field_energy
from cseg_monai.postprocessing.crf.mean_field import _argmax_labels


@pytest.fixture(scope="module")
def crop():
    return vnc_crop()


def test_argmax_labels_is_the_argmax_with_ties_to_the_lower_label():
    q = torch.tensor([[0.2, 0.5, 0.1, 0.4], [0.5, 0.5, 0.1, 0.4], [0.3, 0.0, 0.8, 0.2]])
    labels = _argmax_labels(q)
    assert labels.dtype == torch.uint8 and labels.tolist() == [1, 0, 2, 0]
    rng = torch.Generator().manual_seed(0)
    q = torch.rand(7, 1000, generator=rng)
    assert torch.equal(_argmax_labels(q).long(), q.argmax(0))


def test_mean_field_energy_does_not_increase(crop):
    image, _, prob = crop
    for compat in ("potts", "organelle"):
        params = CRFParams(iterations=6, smoothness_sigma=10.0, appearance_sigma=40.0, intensity_sigma=10.0, compatibility=compat)
        energies = mean_field_energy(prob, image, params, VNC_SPACING)
        assert len(energies) == 7
        steps = np.diff(energies)
        assert (steps <= 1e-6 * abs(energies[0])).all(), (compat, energies)
        assert energies[-1] < energies[0]


def test_zero_weights_return_the_input_probabilities():
    rng = np.random.default_rng(0)
    prob = rng.dirichlet(np.ones(4), size=(6, 20, 24)).transpose(3, 0, 1, 2).astype(np.float32)
    q = DenseCRF(CRFParams(smoothness_weight=0, appearance_weight=0))(prob, rng.integers(0, 255, (6, 20, 24)))
    np.testing.assert_allclose(q, prob, atol=1e-5)
    assert q.shape == prob.shape and q.dtype == np.float32


def test_potts_removes_isolated_flips_but_keeps_a_confident_region():
    """Known answer: a uniform image, label 0 everywhere except single flipped voxels -> all 0;
    a large region that the unary strongly calls 1 survives."""
    labels = np.zeros((12, 32, 32), int)
    labels[2:10, 8:24, 8:24] = 1  # a big confident block of label 1
    prob = np.where(np.eye(2, dtype=bool)[labels].transpose(3, 0, 1, 2), 0.9, 0.1).astype(np.float32)
    flips = [(1, 2, 3), (11, 30, 30), (5, 28, 4)]
    for z, y, x in flips:
        prob[:, z, y, x] = (0.3, 0.7)  # isolated, moderately confident mistakes
    image = np.full(labels.shape, 100, np.uint8)
    out = DenseCRF(CRFParams(smoothness_weight=5, smoothness_sigma=2, appearance_weight=0)).labels(prob, image)
    assert all(out[f] == 0 for f in flips)
    assert (out[4:8, 10:22, 10:22] == 1).all()  # the block's core survives
    far = np.ones(labels.shape, bool)
    far[0:12, 6:26, 6:26] = False
    assert (out[far] == 0).all()  # nothing grows away from it
    assert (out == labels).mean() > 0.99  # only the block's corners and edges may be rounded off


def test_appearance_kernel_follows_the_image_edge():
    """Two regions split by an image edge; the unary is ambiguous near it: the bilateral kernel
    assigns each side by intensity, a spatial-only kernel cannot."""
    image = np.zeros((40, 40), np.uint8)
    image[:, 20:] = 200
    truth = (image > 0).astype(int)
    prob = np.full((2, 40, 40), 0.5, np.float32)
    prob[:, :, :10] = np.array([0.8, 0.2])[:, None, None]
    prob[:, :, 30:] = np.array([0.2, 0.8])[:, None, None]
    prob[:, :, 10:30] = np.array([0.45, 0.55])[:, None, None]  # every ambiguous pixel leans to 1
    bilateral = DenseCRF(CRFParams(smoothness_weight=0, appearance_weight=10, appearance_sigma=15, intensity_sigma=20))
    assert (bilateral.labels(prob, image) == truth).mean() == 1.0
    spatial = DenseCRF(CRFParams(smoothness_weight=10, smoothness_sigma=15, appearance_weight=0))
    assert (spatial.labels(prob, image)[:, 10:20] == 1).mean() > 0.5  # without the image, the left middle goes wrong
