"""The public :class:`DenseCRF` (``crf.dense_crf``): anisotropy, 2D and multichannel input, blocks, GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from postprocessing.crf.crf_testing import VNC_SPACING, noisy_probabilities, vnc_crop

from cseg_monai.postprocessing import DenseCRF as PackageDenseCRF
from cseg_monai.postprocessing.crf import CRFParams, DenseCRF


@pytest.fixture(scope="module")
def crop():
    return vnc_crop()


def test_public_names_are_one_class():
    """``cseg_monai.postprocessing.DenseCRF`` (bundle configs' ``_target_``) is the package's class."""
    assert PackageDenseCRF is DenseCRF and DenseCRF.__module__ == "cseg_monai.postprocessing.crf.dense_crf"


def test_anisotropic_spacing_is_honoured():
    """One section weakly labelled 1 between sections of 0, each uniform in-plane: with thick
    sections (far apart) the smoothness kernel sees mostly its own section and keeps it; with
    cubic voxels it sees the neighbouring sections and flips it."""
    labels = np.zeros((9, 24, 24), int)
    labels[4] = 1
    prob = np.where(np.eye(2, dtype=bool)[labels].transpose(3, 0, 1, 2), 0.6, 0.4).astype(np.float32)
    image = np.full(labels.shape, 50, np.uint8)
    crf = DenseCRF(CRFParams(smoothness_weight=8, smoothness_sigma=3.0, appearance_weight=0))
    thick = crf.labels(prob, image, spacing=(30.0, 1.0, 1.0))
    np.testing.assert_array_equal(thick, labels)
    cubic = crf.labels(prob, image, spacing=(1.0, 1.0, 1.0))
    assert (cubic[4] == 0).all()
    # the same physical sigma over sections 3x thicker than pixels: the z reach shrinks, not only switches off
    z_reach = [(crf(prob, image, spacing=(s, 1.0, 1.0))[1, 4]).mean() for s in (1.0, 2.0, 4.0, 30.0)]
    assert z_reach == sorted(z_reach) and z_reach[0] < 0.5 < z_reach[-1]


def test_two_dimensional_and_multichannel_images():
    rng = np.random.default_rng(3)
    truth = np.zeros((48, 48), int)
    truth[10:38, 12:30] = 1
    prob = noisy_probabilities(truth, 2, seed=3, signal=1.5, noise=1.0)
    grey = np.where(truth == 1, 180, 60).astype(np.uint8)
    two = np.stack([grey, (rng.random(grey.shape) * 255).astype(np.uint8)])  # a second, uninformative channel
    params = CRFParams(smoothness_sigma=1.0, appearance_sigma=6.0, intensity_sigma=(20.0, 1000.0))
    out = DenseCRF(params).labels(prob, two)
    assert out.shape == truth.shape and out.dtype == np.uint8
    assert (out == truth).mean() > 0.99 > (prob.argmax(0) == truth).mean()
    assert DenseCRF(params.replace(intensity_sigma=20.0))(prob, grey).shape == prob.shape


def test_blocks_with_halo_match_the_whole_volume(crop):
    image, label, prob = crop
    params = CRFParams(smoothness_sigma=10.0, appearance_sigma=40.0, intensity_sigma=10.0)
    whole = DenseCRF(params).labels(prob, image, VNC_SPACING)
    crf = DenseCRF(params, block_voxels=150_000)
    blocks = list(crf._blocks(prob.shape[1:], VNC_SPACING))
    assert len(blocks) >= 4
    covered = np.zeros(prob.shape[1:], int)
    for block in blocks:
        covered[block.core_slices] += 1
    assert (covered == 1).all()  # the cores tile the volume exactly once
    blocked = crf.labels(prob, image, VNC_SPACING)
    assert (blocked == whole).mean() > 0.995
    marginals = crf(prob, image, VNC_SPACING)
    np.testing.assert_allclose(marginals.sum(0), 1.0, atol=1e-4)
    assert (marginals.argmax(0) == blocked).all()


def test_blocks_read_their_halo_and_fit_the_budget():
    """Every outer box is its core grown by the halo (clipped at the border) and holds at most
    ``block_voxels``; a 2D halo applies to y and x; a volume that fits is one block."""
    shape = (10, 60, 70)
    crf = DenseCRF(CRFParams(), block_voxels=12_000, halo=(2, 3))
    blocks = list(crf._blocks(shape, (1.0, 1.0, 1.0)))
    assert len(blocks) > 1
    for block in blocks:
        assert np.prod([b - a for a, b in block.outer]) <= 12_000
        for (c0, c1), (o0, o1), h, n in zip(block.core, block.outer, (0, 2, 3), shape):
            assert (o0, o1) == (max(c0 - h, 0), min(c1 + h, n))
    assert [(b.core, b.outer) for b in DenseCRF(block_voxels=42_000)._blocks(shape, (1.0, 1.0, 1.0))] == [
        (((0, 10), (0, 60), (0, 70)),) * 2
    ]


def test_input_is_not_modified(crop):
    image, _, prob = crop
    # a probability array whose (voxels, labels) view is contiguous, the layout most likely to be aliased
    prob_f = np.ascontiguousarray(np.moveaxis(prob[:, :4, :32, :32], 0, -1)).transpose(3, 0, 1, 2)
    before = prob_f.copy()
    DenseCRF(CRFParams(iterations=2))(prob_f, image[:4, :32, :32])
    np.testing.assert_array_equal(prob_f, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path runs where one is")
@pytest.mark.parametrize("widths", [(10.0, 20.0), (2.0, 3.0)], ids=["grid", "lattice"])
def test_gpu_gives_the_cpu_marginals(widths):
    """Both appearance kernels (cuSPARSE products, torch sort and search) on a GPU, against the CPU."""
    rng = np.random.default_rng(2)
    prob = rng.dirichlet(np.ones(4), size=(8, 40, 40)).transpose(3, 0, 1, 2).astype(np.float32)
    image = rng.integers(0, 255, (8, 40, 40)).astype(np.float32)
    params = CRFParams(iterations=3, appearance_sigma=widths[0], intensity_sigma=widths[1])
    cpu = DenseCRF(params, device="cpu")(prob, image)
    gpu = DenseCRF(params, device="cuda")(prob, image)
    assert np.abs(cpu - gpu).max() < 1e-4
