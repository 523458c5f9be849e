"""Dense CRF: both backends, known Potts answers, energy, anisotropy, blocks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cseg_monai.postprocessing import (
    CRFParams,
    DenseCRF,
    compatibility_matrix,
    have_pydensecrf,
    mean_field_energy,
    organelle_compatibility,
)
from conftest import require_data

needs_pydensecrf = pytest.mark.skipif(
    not have_pydensecrf(),
    reason="pydensecrf (package pydensecrf2) is not installed: `bash scripts/setup.sh crf` builds it (Cython < 3)",
)
VNC_SPACING = (50.0, 4.6, 4.6)  # nm: sections are about 10x thicker than pixels


def noisy_probabilities(labels: np.ndarray, n_labels: int, seed: int = 0, signal: float = 2.0, noise: float = 1.5) -> np.ndarray:
    """Softmax of a one-hot of ``labels`` plus Gaussian noise: a per-voxel classifier's mistakes."""
    rng = np.random.default_rng(seed)
    logits = signal * np.moveaxis(np.eye(n_labels)[labels], -1, 0) + noise * rng.normal(size=(n_labels,) + labels.shape)
    prob = np.exp(logits - logits.max(0))
    return (prob / prob.sum(0)).astype(np.float32)


@pytest.fixture(scope="module")
def vnc_crop():
    """A real anisotropic ssTEM crop (15 x 128 x 128) with 5 classes, and noisy probabilities of its labels."""
    from cseg_monai.data.datasets import drosophila_vnc

    root = require_data("drosophila_vnc", "stack1")
    image, label = drosophila_vnc.load_stack(root)
    crop = (slice(0, 15), slice(300, 428), slice(300, 428))
    image, label = image[crop], label[crop]
    label = np.where(label == 255, 0, label)  # unlabelled pixels (none in this crop) would count as class 0
    return image, label, noisy_probabilities(label, 6)


# ---------------------------------------------------------------------- the model


def _dense_kernel(shape, sigma_vox, intensity=None, sigma_intensity=()):
    """The native backend's normalised kernel ``N S^T B S N`` as a dense voxels x voxels matrix, from its definition."""
    import math

    from cseg_monai.postprocessing.crf import _cell_steps, _gaussian_taps

    steps, cells, blur = _cell_steps(shape, sigma_vox)
    zz, yy, xx = np.meshgrid(*[np.arange(n) // s for n, s in zip(shape, steps)], indexing="ij")
    cell = ((zz * cells[1] + yy) * cells[2] + xx).reshape(-1)
    n = cell.size
    columns, weights, axes = [cell], [np.ones(n)], list(cells)
    for c in range(0 if intensity is None else intensity.shape[0]):
        f = intensity[c].reshape(-1) / sigma_intensity[c]
        f = f - f.min()
        lower = np.floor(f)
        bins = int(lower.max()) + 2
        t = f - lower
        columns = [x * bins + lower.astype(int) + k for x in columns for k in (0, 1)]
        weights = [w * wk for w in weights for wk in (1 - t, t)]
        axes.append(bins)
        blur.append(math.sqrt(2.0 / 3.0))
    splat = np.zeros((n, math.prod(axes)))
    for col, w in zip(columns, weights):
        splat[np.arange(n), col] += w
    band = np.ones((1, 1))
    for m, sigma in zip(axes, blur):
        b = np.eye(m)
        if sigma >= 1e-3 and m > 1:
            taps = _gaussian_taps(sigma).numpy().astype(np.float64)
            r = taps.size // 2
            d = np.arange(m)[:, None] - np.arange(m)[None, :]
            b = np.where(np.abs(d) <= r, taps[np.clip(d + r, 0, 2 * r)], 0.0)
        band = np.kron(band, b)
    k = splat @ band @ splat.T
    norm = 1 / np.sqrt(k.sum(1))
    return norm[:, None] * k * norm[None, :]


@pytest.mark.parametrize("shape", [(5, 7, 9), (1, 11, 6), (8, 8, 8)])
def test_native_kernels_equal_their_dense_definition(shape):
    """The pooled smoothness kernel and the sparse bilateral grid are exactly ``N S^T B S N`` (partial cells too)."""
    import torch

    from cseg_monai.postprocessing.crf import _GridKernel, _PoolKernel

    rng = np.random.default_rng(3)
    n = int(np.prod(shape))
    q = rng.dirichlet(np.ones(4), size=n).T.astype(np.float32)  # (labels, voxels), sums to one
    image = rng.integers(0, 255, (2,) + shape).astype(np.float32)
    sigma = (2.6, 3.0, 4.2)
    cases = [
        (_PoolKernel(shape, sigma, torch.device("cpu")), _dense_kernel(shape, sigma)),
        (_GridKernel(shape, sigma, torch.from_numpy(image[:1]), [40.0]), _dense_kernel(shape, sigma, image[:1], [40.0])),
        (_GridKernel(shape, sigma, torch.from_numpy(image), [60.0, 90.0]), _dense_kernel(shape, sigma, image, [60.0, 90.0])),
    ]
    for kernel, dense in cases:
        want = 2.5 * q.astype(np.float64) @ dense  # dense is symmetric
        for sums_to_one in (False, True):
            out = torch.full((4, n), 7.0)
            kernel.apply(torch.from_numpy(q), out, 2.5, accumulate=False, sums_to_one=sums_to_one)
            assert np.abs(out.numpy() - want).max() < 1e-5, (type(kernel).__name__, sums_to_one)
        out = torch.ones(4, n)
        kernel.apply(torch.from_numpy(q), out, 2.5, accumulate=True)
        assert np.abs(out.numpy() - 1 - want).max() < 1e-5


@pytest.mark.parametrize("bound", [50, 1 << 40, 1 << 62])  # packed sort, and an argsort where key and position do not fit
def test_stable_order_sorts_stably(bound):
    from cseg_monai.postprocessing.crf import _stable_order

    keys = torch.from_numpy(np.random.default_rng(4).integers(0, min(bound, 50), 5000))
    keys[::7] = 3  # many ties
    order = _stable_order(keys * (bound // 50), bound)
    assert torch.equal(order, torch.argsort(keys, stable=True))


def test_appearance_kernel_is_a_grid_when_wide_and_a_lattice_when_narrow():
    import torch

    from cseg_monai.postprocessing.crf import _appearance_kernel, _GridKernel, _LatticeKernel

    image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (1, 8, 40, 40)).astype(np.float32))
    assert isinstance(_appearance_kernel((8, 40, 40), (10.0,) * 3, image, (20.0,)), _GridKernel)
    assert isinstance(_appearance_kernel((8, 40, 40), (2.0,) * 3, image, (3.0,)), _LatticeKernel)


def test_lattice_kernel_is_a_gaussian_in_position_and_intensity():
    """A delta filtered on a flat image spreads with about the kernel's sigma and stays centred;
    across an intensity step of many intensity sigmas almost nothing passes."""
    import torch

    from cseg_monai.postprocessing.crf import _lattice_features, _LatticeKernel

    shape, sigma = (1, 61, 61), 4.0
    flat = torch.zeros((1,) + shape)
    kernel = _LatticeKernel(_lattice_features(shape, (1.0, sigma, sigma), flat, (10.0,), position_axes=(1, 2)))
    delta = torch.zeros(1, 61 * 61)
    delta[0, 30 * 61 + 30] = 1.0
    out = torch.zeros_like(delta)
    kernel.apply(delta, out, 1.0, accumulate=False)
    response = out.view(61, 61).double()
    yy, xx = torch.meshgrid(torch.arange(61.0), torch.arange(61.0), indexing="ij")
    mass = response.sum()
    cy, cx = (response * yy).sum() / mass, (response * xx).sum() / mass
    sy = torch.sqrt((response * (yy - cy) ** 2).sum() / mass)
    sx = torch.sqrt((response * (xx - cx) ** 2).sum() / mass)
    assert abs(cy - 30) < 0.5 and abs(cx - 30) < 0.5
    assert 0.7 * sigma < sy < 1.5 * sigma and 0.7 * sigma < sx < 1.5 * sigma, (float(sy), float(sx))
    # an intensity step of 20 intensity sigmas between the halves: the far half gets (almost) nothing
    step = torch.zeros((1,) + shape)
    step[..., 31:] = 200.0
    kernel = _LatticeKernel(_lattice_features(shape, (1.0, sigma, sigma), step, (10.0,), position_axes=(1, 2)))
    kernel.apply(delta, out, 1.0, accumulate=False)
    response = out.view(61, 61)
    assert response[:, 31:].sum() < 1e-3 * response[:, :31].sum()


@needs_pydensecrf
@pytest.mark.parametrize(
    "shape, channels, spacing",
    [
        ((30, 40), 1, None),
        ((30, 40), 2, None),
        ((6, 30, 40), 1, None),
        ((6, 30, 40), 2, (3.0, 1.0, 1.5)),
        ((1, 40), 1, None),  # axes of one voxel are features too, as in pydensecrf
        ((3, 1, 40), 1, None),
    ],
)
def test_lattice_kernel_is_pydensecrfs_lattice(shape, channels, spacing):
    """Narrow appearance kernels use the permutohedral lattice, built with pydensecrf's float32
    arithmetic and features: the same vertices (ties included: a zero channel, the first plane)
    and marginals equal to float precision after 1 and 3 iterations."""
    rng = np.random.default_rng(11)
    prob = rng.dirichlet(np.ones(4), size=shape)
    prob = np.ascontiguousarray(np.moveaxis(prob, -1, 0), dtype=np.float32)
    image = rng.integers(0, 255, (channels,) + shape).astype(np.float32)
    if channels == 2:
        image[0] = 0  # a constant feature: exact ties between remainders
    image = image[0] if channels == 1 else image
    for iterations in (1, 3):
        params = CRFParams(
            iterations=iterations, smoothness_weight=0.0, appearance_weight=3.0, appearance_sigma=2.5, intensity_sigma=30.0
        )
        native = DenseCRF(params, backend="native", device="cpu")(prob, image, spacing)
        reference = DenseCRF(params, backend="pydensecrf")(prob, image, spacing)
        assert np.abs(native - reference).max() < 1e-4, (iterations, np.abs(native - reference).max())


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


def test_mean_field_energy_does_not_increase(vnc_crop):
    image, _, prob = vnc_crop
    for compat in ("potts", "organelle"):
        params = CRFParams(iterations=6, smoothness_sigma=10.0, appearance_sigma=40.0, intensity_sigma=10.0, compatibility=compat)
        energies = mean_field_energy(prob, image, params, VNC_SPACING)
        assert len(energies) == 7
        steps = np.diff(energies)
        assert (steps <= 1e-6 * abs(energies[0])).all(), (compat, energies)
        assert energies[-1] < energies[0]


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


def test_blocks_with_halo_match_the_whole_volume(vnc_crop):
    image, label, prob = vnc_crop
    params = CRFParams(smoothness_sigma=10.0, appearance_sigma=40.0, intensity_sigma=10.0)
    whole = DenseCRF(params).labels(prob, image, VNC_SPACING)
    crf = DenseCRF(params, block_voxels=150_000)
    blocks = list(crf._blocks(prob.shape[1:], VNC_SPACING))
    assert len(blocks) >= 4
    covered = np.zeros(prob.shape[1:], int)
    for core, _ in blocks:
        covered[tuple(slice(a, b) for a, b in core)] += 1
    assert (covered == 1).all()  # the cores tile the volume exactly once
    blocked = crf.labels(prob, image, VNC_SPACING)
    assert (blocked == whole).mean() > 0.995
    marginals = crf(prob, image, VNC_SPACING)
    np.testing.assert_allclose(marginals.sum(0), 1.0, atol=1e-4)
    assert (marginals.argmax(0) == blocked).all()


def test_input_is_not_modified(vnc_crop):
    image, _, prob = vnc_crop
    # a probability array whose (voxels, labels) view is contiguous, the layout most likely to be aliased
    prob_f = np.ascontiguousarray(np.moveaxis(prob[:, :4, :32, :32], 0, -1)).transpose(3, 0, 1, 2)
    before = prob_f.copy()
    DenseCRF(CRFParams(iterations=2))(prob_f, image[:4, :32, :32])
    np.testing.assert_array_equal(prob_f, before)


# ---------------------------------------------------------------------- pydensecrf


@needs_pydensecrf
def test_native_agrees_with_pydensecrf_on_a_real_3d_crop(vnc_crop):
    image, label, prob = vnc_crop
    for compat in ("potts", "organelle"):
        params = CRFParams(
            iterations=5, smoothness_weight=3, smoothness_sigma=10.0, appearance_weight=5,
            appearance_sigma=40.0, intensity_sigma=10.0, compatibility=compat,
        )
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
    import builtins

    real_import = builtins.__import__

    def no_pydensecrf(name, *args, **kwargs):
        if name.startswith("pydensecrf"):
            raise ImportError("no pydensecrf here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydensecrf)
    with pytest.raises(ImportError, match="scripts/setup.sh crf"):
        DenseCRF(backend="pydensecrf").labels(np.full((2, 4, 4), 0.5, np.float32), np.zeros((4, 4)))


# ---------------------------------------------------------------------- parameters and bad input


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
