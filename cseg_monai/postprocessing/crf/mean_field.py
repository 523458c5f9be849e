"""Mean-field inference of the native backend on one block, its free energy, and the label argmax.

Example:
    >>> rng = np.random.default_rng(0)
    >>> prob = rng.dirichlet(np.ones(3), size=(1, 8, 8)).transpose(3, 0, 1, 2).astype(np.float32)
    >>> image = rng.integers(0, 255, (1, 1, 8, 8)).astype(np.float32)
    >>> mu = 1 - torch.eye(3)  # Potts
    >>> q = _native_block(prob, image, (1.0, 1.0, 1.0), CRFParams(iterations=2), mu, torch.device("cpu"))
    >>> tuple(q.shape), bool(torch.allclose(q.sum(0), torch.ones(64)))
    ((3, 64), True)
    >>> _argmax_labels(q).dtype
    torch.uint8
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from cseg_monai.postprocessing.crf.kernels import Kernel, _kernels
from cseg_monai.postprocessing.crf.params import CRFParams


def _argmax_labels(q: torch.Tensor) -> torch.Tensor:
    """uint8 argmax over the label axis of ``(labels, voxels)`` (ties: the lower label).

    The row maximum (``amax``), then one comparison per label over contiguous rows, from the
    last label down so that the lowest tying label wins: ``q.argmax(0)`` strides across the
    rows and is about ten times slower on a CPU.
    """
    best = q.amax(dim=0)
    out = torch.full((q.shape[1],), q.shape[0] - 1, dtype=torch.uint8, device=q.device)
    for label in range(q.shape[0] - 2, -1, -1):
        out.masked_fill_(q[label] == best, label)
    return out


def _native_block(
    prob: np.ndarray,
    image: np.ndarray,
    spacing3: Sequence[float],
    params: CRFParams,
    mu: torch.Tensor,
    device: torch.device,
    energies: list[float] | None = None,
    normalise_last: bool = True,
    position_axes: Sequence[int] = (0, 1, 2),
) -> torch.Tensor:
    """Mean field on one block: ``prob`` (L, Z, Y, X), ``image`` (C, Z, Y, X) -> Q (L, voxels).

    With ``normalise_last=False`` the last iteration returns its logits instead of Q: the same
    argmax, one softmax less (for labels only). ``position_axes``: the input's own spatial
    axes (``(1, 2)`` for a 2D input), for the lattice's features.
    """
    n_labels = prob.shape[0]
    shape3 = tuple(prob.shape[1:])
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
    kernels = _kernels(shape3, spacing3, params, img, position_axes)  # first: its temporaries never meet the big buffers
    del img
    log_p = torch.empty((n_labels, math.prod(shape3)), dtype=torch.float32, device=device)
    for label in range(n_labels):  # a copy per label: no full-size temporary, never the caller's array
        log_p[label].copy_(torch.from_numpy(np.ascontiguousarray(prob[label]).reshape(-1)))
    log_p.clamp_(min=1e-8).log_()  # log p = -U (the unary), computed in our own buffer
    q = torch.softmax(log_p, dim=0)
    potts = bool(torch.equal(mu, 1 - torch.eye(n_labels, device=mu.device)))
    if energies is not None:
        energies.append(_energy(log_p, q, kernels, mu))
    for it in range(params.iterations):
        # every kernel splats Q onto its (small) grid first; then Q's buffer is free and takes the
        # message: two full-size buffers in all (log p and Q / message / logits)
        grids = [kernel.splat(q, sums_to_one=True) for _, kernel in kernels]
        for k, ((weight, kernel), grid) in enumerate(zip(kernels, grids)):
            kernel.slice(grid, q, weight, accumulate=k > 0)  # the first overwrites: no zeroing pass
        del grids
        if not kernels:
            q.zero_()
        # logits = -U - (sum_k w_k K_k Q) mu; for Potts (mu = 1 - I) that is -U + msg up to a
        # per-voxel constant, which the softmax ignores
        if potts:
            logits = q.add_(log_p)
        else:
            for lo in range(0, q.shape[1], 1 << 16):  # in chunks: the label mixing needs a temporary
                part = slice(lo, lo + (1 << 16))
                q[:, part] = torch.addmm(log_p[:, part], mu.T, q[:, part], alpha=-1.0)
            logits = q
        if it == params.iterations - 1 and not normalise_last and energies is None:
            return logits
        if logits.device.type == "cpu":  # the CPU softmax reads each voxel's logits before writing it
            q = torch.ops.aten._softmax.out(logits, 0, False, out=logits)
        else:
            q = torch.softmax(logits, dim=0)
        if energies is not None:
            energies.append(_energy(log_p, q, kernels, mu))
    return q


def _energy(log_p: torch.Tensor, q: torch.Tensor, kernels: list[tuple[float, Kernel]], mu: torch.Tensor) -> float:
    """Mean-field free energy ``<U> + 1/2 <pairwise> - H(Q)`` of ``q`` (float64 sum), ``U = -log_p``."""
    buf = torch.zeros_like(q)
    for weight, kernel in kernels:
        kernel.apply(q, buf, weight)
    pair = (torch.mm(mu.T, buf) * q).sum(dtype=torch.float64)
    ent = (q * torch.log(q.clamp_min(1e-30))).sum(dtype=torch.float64)
    return float(-(log_p * q).sum(dtype=torch.float64) + 0.5 * pair + ent)
