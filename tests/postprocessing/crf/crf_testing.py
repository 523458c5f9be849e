"""Shared helpers of the dense-CRF tests (not a test module): data, noisy probabilities, a dense kernel.

Imported as ``postprocessing.crf.crf_testing`` (``tests/`` is on the path, see ``pyproject.toml``).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cseg_monai.data.datasets import drosophila_vnc
from cseg_monai.postprocessing.crf import have_pydensecrf
from cseg_monai.postprocessing.crf.blur import _cell_steps, _gaussian_taps

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


def vnc_crop() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A real anisotropic ssTEM crop (15 x 128 x 128) with 5 classes, and noisy probabilities of its labels.

    Skips the calling test when the data is absent; loaded once per session.
    """
    root = require_data("drosophila_vnc", "stack1")
    return _load_vnc_crop(root)


@functools.lru_cache(maxsize=1)
def _load_vnc_crop(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, label = drosophila_vnc.load_stack(root)
    crop = (slice(0, 15), slice(300, 428), slice(300, 428))
    image, label = image[crop], label[crop]
    label = np.where(label == 255, 0, label)  # unlabelled pixels (none in this crop) would count as class 0
    return image, label, noisy_probabilities(label, 6)


def dense_kernel(shape, sigma_vox, intensity=None, sigma_intensity=()):
    """The native backend's normalised kernel ``N S^T B S N`` as a dense voxels x voxels matrix, from its definition."""
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


def check_against_dense(kernel, dense: np.ndarray, q: np.ndarray) -> None:
    """``kernel.apply`` (overwrite, both label modes, and accumulate) equals the dense ``2.5 q K``."""
    n_labels, n = q.shape
    want = 2.5 * q.astype(np.float64) @ dense  # dense is symmetric
    for sums_to_one in (False, True):
        out = torch.full((n_labels, n), 7.0)
        kernel.apply(torch.from_numpy(q), out, 2.5, accumulate=False, sums_to_one=sums_to_one)
        assert np.abs(out.numpy() - want).max() < 1e-5, (type(kernel).__name__, sums_to_one)
    out = torch.ones(n_labels, n)
    kernel.apply(torch.from_numpy(q), out, 2.5, accumulate=True)
    assert np.abs(out.numpy() - 1 - want).max() < 1e-5
