"""The public interface of the dense CRF: :class:`DenseCRF` (both backends, blocks) and :func:`mean_field_energy`.

Example:
    >>> prob = np.full((2, 6, 6), 0.5, np.float32); prob[:, :, :3] = [[[0.9]], [[0.1]]]
    >>> DenseCRF(CRFParams(iterations=2), device="cpu").labels(prob, np.zeros((6, 6)))[0].tolist()
    [0, 0, 0, 0, 0, 0]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from cseg_monai.common.tiling import Block, fit_block_shape, iter_blocks
from cseg_monai.postprocessing.crf.mean_field import _argmax_labels, _native_block
from cseg_monai.postprocessing.crf.params import BACKENDS, CRFParams, check_crf_inputs, compatibility_matrix
from cseg_monai.postprocessing.crf.pydensecrf_backend import _pydensecrf

__all__ = ["DenseCRF", "mean_field_energy"]


class DenseCRF:
    """Fully connected CRF post-processing of class probabilities, 2D or 3D.

    Args:
        params: the model (:class:`CRFParams`, or a mapping of its fields).
        backend: ``"native"`` (PyTorch, CPU/GPU, blocks) or ``"pydensecrf"`` (optional C++ package).
        device: torch device of the native backend (default: CUDA when available, else CPU).
        block_voxels: the native backend splits volumes with more voxels than this into blocks
            (core plus halo on every side); each block's result is kept only in its core.
        halo: voxels of context around each block core per axis (default: 3 x the largest
            kernel sigma, in voxels of that axis).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> image = np.zeros((32, 32), np.uint8); image[:, 16:] = 200
        >>> truth = (image > 100).astype(int)
        >>> logits = 1.5 * np.eye(2)[truth].transpose(2, 0, 1) + rng.normal(0, 1.0, (2, 32, 32))
        >>> prob = np.exp(logits) / np.exp(logits).sum(0)
        >>> crf = DenseCRF(CRFParams(smoothness_sigma=1.0, appearance_sigma=5.0, intensity_sigma=20.0))
        >>> before = (prob.argmax(0) == truth).mean()
        >>> after = (crf.labels(prob, image) == truth).mean()
        >>> bool(after > before), bool(after > 0.99)
        (True, True)
    """

    def __init__(
        self,
        params: CRFParams | dict[str, Any] | None = None,
        backend: str = "native",
        device: str | torch.device | None = None,
        block_voxels: int = 1 << 23,
        halo: int | Sequence[int] | None = None,
    ) -> None:
        if params is None:
            params = CRFParams()
        elif isinstance(params, dict):
            params = CRFParams.from_dict(params)
        elif not isinstance(params, CRFParams):
            raise TypeError(f"params must be CRFParams or a dict, got {type(params).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown CRF backend {backend!r}; choose one of {list(BACKENDS)}")
        if isinstance(block_voxels, bool) or not isinstance(block_voxels, (int, np.integer)) or block_voxels < 1:
            raise ValueError(f"block_voxels must be a positive integer, got {block_voxels!r}")
        self.params = params
        self.backend = backend
        self.device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.block_voxels = int(block_voxels)
        self.halo = halo

    def __call__(
        self,
        prob: np.ndarray | torch.Tensor,
        image: np.ndarray | torch.Tensor,
        spacing: Sequence[float] | None = None,
        *,
        name: str = "input",
    ) -> np.ndarray:
        """Refined marginals: float32 array with the shape of ``prob`` ``(L, [Z,] Y, X)``.

        Args:
            prob: class probabilities, class axis first (float16/32/64).
            image: intensities ``([Z,] Y, X)`` or ``(C, [Z,] Y, X)``.
            spacing: physical voxel size per spatial axis (units of the sigmas; default 1).
            name: used in error messages (e.g. the input file name).
        """
        return self._run(prob, image, spacing, name=name, marginals=True)

    def labels(
        self,
        prob: np.ndarray | torch.Tensor,
        image: np.ndarray | torch.Tensor,
        spacing: Sequence[float] | None = None,
        *,
        name: str = "input",
    ) -> np.ndarray:
        """Refined labels (argmax of the marginals), uint8 ``([Z,] Y, X)``; keeps no full marginals."""
        return self._run(prob, image, spacing, name=name, marginals=False)

    def energies(
        self, prob: np.ndarray, image: np.ndarray, spacing: Sequence[float] | None = None, *, name: str = "input"
    ) -> list[float]:
        """Native backend, one block: the mean-field free energy before and after every iteration."""
        return mean_field_energy(prob, image, self.params, spacing, device=self.device, name=name)

    # ----------------------------------------------------------------------------------
    def _prepare(
        self, prob: np.ndarray | torch.Tensor, image: np.ndarray | torch.Tensor, spacing: Sequence[float] | None, name: str
    ) -> tuple[int, tuple[int, ...], tuple[float, ...], np.ndarray, np.ndarray, np.ndarray]:
        """Checked inputs: ``(n_labels, spatial shape, spacing, mu, prob (L, *spatial), image (C, *spatial))``."""
        n_labels, spatial, n_ch, spacing_t = check_crf_inputs(prob, image, spacing, name=name)
        mu = compatibility_matrix(self.params.compatibility, n_labels)
        prob_np = prob.detach().cpu().numpy() if isinstance(prob, torch.Tensor) else np.asarray(prob)
        img_np = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        img_np = img_np.reshape((n_ch,) + tuple(spatial))
        sig_i = self.params.intensity_sigma
        if isinstance(sig_i, tuple) and len(sig_i) != n_ch:
            raise ValueError(f"{name}: intensity_sigma has {len(sig_i)} values but the image has {n_ch} channel(s)")
        return n_labels, tuple(spatial), spacing_t, mu, prob_np, img_np

    def _run(
        self,
        prob: np.ndarray | torch.Tensor,
        image: np.ndarray | torch.Tensor,
        spacing: Sequence[float] | None,
        *,
        name: str,
        marginals: bool,
    ) -> np.ndarray:
        """Marginals (float32, the shape of ``prob``) or labels (uint8, spatial shape), block by block."""
        n_labels, spatial, spacing_t, mu, prob_np, img_np = self._prepare(prob, image, spacing, name)
        if self.backend == "pydensecrf":
            q = _pydensecrf(prob_np, img_np, spacing_t, self.params, mu)
            return q if marginals else q.argmax(0).astype(np.uint8)
        # native: work in 3D, a 2D input is one plane
        if len(spatial) == 2:
            prob3, img3, shape3 = prob_np[:, None], img_np[:, None], (1,) + spatial
            spacing3 = (1.0,) + spacing_t
        else:
            prob3, img3, shape3, spacing3 = prob_np, img_np, spatial, spacing_t
        mu_t = torch.from_numpy(mu).to(self.device)
        out = np.empty((n_labels,) + shape3, np.float32) if marginals else np.empty(shape3, np.uint8)
        for block in self._blocks(shape3, spacing3):
            box = block.outer_slices
            q = _native_block(
                prob3[(slice(None),) + box], img3[(slice(None),) + box], spacing3, self.params, mu_t, self.device,
                normalise_last=marginals, position_axes=(1, 2) if len(spatial) == 2 else (0, 1, 2),
            )  # fmt: skip
            bshape = tuple(b - a for a, b in block.outer)
            if marginals:
                kept = q.reshape((n_labels,) + bshape)[(slice(None),) + block.inner]
                out[(slice(None),) + block.core_slices] = kept.cpu().numpy()
            else:
                out[block.core_slices] = _argmax_labels(q).reshape(bshape)[block.inner].cpu().numpy()
            del q
        if len(spatial) == 2:
            out = out[:, 0] if marginals else out[0]
        return out

    def _blocks(self, shape3: tuple[int, int, int], spacing3: Sequence[float]) -> Iterator[Block]:
        """Blocks covering the ``(Z, Y, X)`` volume in C order: cores tile it, each read with its halo.

        One block when the volume has at most ``block_voxels`` voxels; else equal cores, the
        largest axis split first until a core plus its (clipped) halo fits
        (:func:`~cseg_monai.common.tiling.fit_block_shape`).
        """
        if math.prod(shape3) <= self.block_voxels:
            yield from iter_blocks(shape3, shape3)
            return
        if self.halo is None:
            sigma = max(self.params.smoothness_sigma, self.params.appearance_sigma)
            halo = [int(math.ceil(3 * sigma / sp)) if n > 1 else 0 for sp, n in zip(spacing3, shape3)]
        else:
            h = [self.halo] * 3 if isinstance(self.halo, (int, np.integer)) else list(self.halo)
            halo = ([0] * (3 - len(h)) + h)[:3]  # fewer values: the last axes (a 2D halo); more: the first three
            halo = [int(v) for v in halo]
        yield from iter_blocks(shape3, fit_block_shape(shape3, halo, self.block_voxels), halo)


def mean_field_energy(
    prob: np.ndarray,
    image: np.ndarray,
    params: CRFParams,
    spacing: Sequence[float] | None = None,
    *,
    device: str | torch.device = "cpu",
    name: str = "input",
) -> list[float]:
    """Free energy of the native mean-field iterates (before, and after each iteration), whole volume.

    ``F(Q) = sum_i <Q_i, U_i> + 1/2 sum_ij K~(i, j) Q_i^T mu Q_j + sum_i <Q_i, log Q_i>``, the
    quantity mean-field inference minimises (K~ is the weighted sum of the normalised kernels).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> p = rng.dirichlet(np.ones(3), size=(16, 16)).transpose(2, 0, 1)
        >>> e = mean_field_energy(p, rng.integers(0, 255, (16, 16)), CRFParams(iterations=3))
        >>> len(e), bool(e[-1] < e[0])
        (4, True)
    """
    crf = DenseCRF(params, device=device)
    n_labels, spatial, spacing_t, mu, prob_np, img_np = crf._prepare(prob, image, spacing, name)
    if len(spatial) == 2:
        prob_np, img_np, spacing_t = prob_np[:, None], img_np[:, None], (1.0,) + spacing_t
    energies: list[float] = []
    axes = (1, 2) if len(spatial) == 2 else (0, 1, 2)
    _native_block(
        prob_np, img_np, spacing_t, params, torch.from_numpy(mu).to(device), torch.device(device), energies, position_axes=axes
    )
    return energies
