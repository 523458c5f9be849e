"""Resample a volume that does not fit in memory, one output box at a time.

:class:`~cseg_monai.transforms.spacing.RescaleToSpacingd` resamples a whole volume with
``torch.nn.functional.interpolate(size=new_shape, align_corners=False)``: trilinear for images
and probabilities, ``"nearest-exact"`` for instance ids. Every output voxel of either depends
only on one or two input voxels per axis, found from its own index by PyTorch's source-index
rule (``(i + 0.5) * in / out - 0.5`` for linear, ``floor((i + 0.5) * in / out)`` for nearest).
:func:`source_box` gives the input box an output box needs, and :func:`resample_box` computes
the output box from it, with the same rule and weights, so a volume resampled box by box equals
the whole-volume ``interpolate`` to float rounding (tested against PyTorch on odd sizes both
ways).

Example:
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> x = np.random.default_rng(0).random((5, 13, 11)).astype(np.float32)
    >>> out_shape, box = (9, 20, 7), ((2, 6), (5, 17), (0, 7))
    >>> src = source_box(x.shape, out_shape, box)
    >>> part = resample_box(x[tuple(slice(a, b) for a, b in src)], src, x.shape, out_shape, box)
    >>> whole = F.interpolate(torch.from_numpy(x)[None, None], size=out_shape, mode="trilinear", align_corners=False)[0, 0]
    >>> bool(np.allclose(part, whole[2:6, 5:17, 0:7].numpy(), atol=1e-6))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["RESAMPLE_MODES", "resample_box", "source_box"]

#: ``"linear"`` (images, probabilities) or ``"nearest"`` (ids), as ``RescaleToSpacingd`` uses them.
RESAMPLE_MODES = ("linear", "nearest")

Box = tuple[tuple[int, int], ...]


def _check(in_shape: Sequence[int], out_shape: Sequence[int], box: Sequence[tuple[int, int]], mode: str) -> tuple[tuple[int, ...], tuple[int, ...], Box]:
    if mode not in RESAMPLE_MODES:
        raise ValueError(f"mode must be one of {RESAMPLE_MODES}, got {mode!r}")
    in_shape, out_shape = tuple(int(n) for n in in_shape), tuple(int(n) for n in out_shape)
    box = tuple((int(a), int(b)) for a, b in box)
    if len(in_shape) != len(out_shape) or len(box) != len(out_shape) or min(in_shape + out_shape, default=0) < 1:
        raise ValueError(f"in_shape {in_shape}, out_shape {out_shape} and box {box} must have one positive entry per axis")
    if any(not 0 <= a < b <= n for (a, b), n in zip(box, out_shape)):
        raise ValueError(f"box {box} is not a non-empty box inside the output {out_shape}")
    return in_shape, out_shape, box


def _axis(n_in: int, n_out: int, start: int, stop: int, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index of ``[start, stop)``: the two source indices and the weight of the second."""
    i = np.arange(start, stop)
    if n_in == n_out:
        return i, i, np.zeros(len(i), np.float32)
    scale = np.float32(n_in) / np.float32(n_out)
    if mode == "nearest":
        src = np.minimum(np.floor((i.astype(np.float32) + np.float32(0.5)) * scale).astype(np.int64), n_in - 1)
        return src, src, np.zeros(len(i), np.float32)
    real = np.maximum((i.astype(np.float32) + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0.0))
    lo = np.minimum(np.floor(real).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (real - lo).astype(np.float32)


def source_box(in_shape: Sequence[int], out_shape: Sequence[int], box: Sequence[tuple[int, int]], mode: str = "linear") -> Box:
    """The input box (inside the input) that the output ``box`` reads.

    Example:
        >>> source_box((10,), (20,), ((0, 4),))
        ((0, 3),)
    """
    in_shape, out_shape, box = _check(in_shape, out_shape, box, mode)
    out = []
    for n_in, n_out, (a, b) in zip(in_shape, out_shape, box):
        lo, hi, _ = _axis(n_in, n_out, a, b, mode)
        out.append((int(lo.min()), int(hi.max()) + 1))
    return tuple(out)


def resample_box(
    source: np.ndarray,
    source_at: Sequence[tuple[int, int]],
    in_shape: Sequence[int],
    out_shape: Sequence[int],
    box: Sequence[tuple[int, int]],
    mode: str = "linear",
) -> np.ndarray:
    """Voxels ``box`` of the input (shape ``in_shape``) resampled to ``out_shape``.

    Args:
        source: the input over ``source_at``, spatial axes last (leading channel axes are kept);
            it must contain :func:`source_box` of ``box``.
        source_at: the input box that ``source`` holds.
        in_shape / out_shape: the whole input's and the whole output's spatial shapes.
        box: the output box to compute.
        mode: ``"linear"`` (float32 result) or ``"nearest"`` (the source's dtype).

    Raises:
        ValueError: inconsistent shapes, or a source that does not hold what the box reads.
    """
    in_shape, out_shape, box = _check(in_shape, out_shape, box, mode)
    n = len(in_shape)
    source_at = tuple((int(a), int(b)) for a, b in source_at)
    x = np.asarray(source)
    if x.ndim < n or tuple(x.shape[x.ndim - n :]) != tuple(b - a for a, b in source_at):
        raise ValueError(f"source of shape {x.shape} does not match its box {source_at}")
    need = source_box(in_shape, out_shape, box, mode)
    if any(s0 > n0 or s1 < n1 for (s0, s1), (n0, n1) in zip(source_at, need)):
        raise ValueError(f"source box {source_at} does not contain {need}, which the output box {box} reads")
    lead = x.ndim - n
    out = x if mode == "nearest" else x.astype(np.float32, copy=False)
    for axis, (n_in, n_out, (a, b), (s0, _)) in enumerate(zip(in_shape, out_shape, box, source_at)):
        lo, hi, w = _axis(n_in, n_out, a, b, mode)
        ax = lead + axis
        first = np.take(out, lo - s0, axis=ax)
        if mode == "nearest" or not w.any():
            out = first
            continue
        shape = [1] * out.ndim
        shape[ax] = len(w)
        w = w.reshape(shape)
        out = first * (np.float32(1.0) - w) + np.take(out, hi - s0, axis=ax) * w
    return np.ascontiguousarray(out)
