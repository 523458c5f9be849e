"""Sliding-window inference one block at a time, with the windows of a whole-volume run.

Out-of-core inference cuts a volume into blocks. Running MONAI's ``sliding_window_inference``
on each block (plus a halo) places the windows differently in every block, so the result
changes with the block size and seams can show at block borders. This module instead lays
the window grid once, on the WHOLE volume, exactly as ``SlidingWindowInferer`` would
(same scan interval, same last-window shift, same zero padding of axes shorter than the
window, same Gaussian importance map), and lets each block compute only the windows that
touch its core. Each block thus gets, voxel for voxel, the weighted sum a whole-volume run
forms there: the result equals in-memory inference to float tolerance whatever the block
shape (the halo a block reads is at most one window minus one voxel on each side).

Test-time augmentation with the eight symmetries of the (Y, X) square (as
:class:`~cseg_monai.inferers.DihedralTTAInferer` does it: every transform runs its own sliding
window on the transformed volume, the activation applies per transform, then the mean), and
with the 16 flips and y/x transposes of a 3D window (as
:class:`~cseg_monai.inferers.FlipTransposeTTAInferer` with ``reduce="mean"``), is reproduced
too: the window grid of each transformed volume is mapped back into the original volume's
coordinates.

Networks of fewer spatial axes than the volume (a 2D membrane network on a ``(Z, Y, X)``
stack) run slice by slice: ``slice_axes=1`` treats the leading axis as independent images.

Example:
    >>> import torch
    >>> net = torch.nn.Conv2d(1, 2, 3, padding=1)
    >>> sw = BlockSlidingWindow((40, 50), roi_size=(16, 16), n_transforms=2, activation="sigmoid")
    >>> core = ((8, 24), (0, 32))
    >>> box = sw.input_box(core)
    >>> volume = torch.rand(40, 50)
    >>> block = read_box(volume.numpy(), box)
    >>> sw(block, box, core, net).shape
    torch.Size([2, 16, 32])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices

from cseg_monai.common.flips import FLIP_TRANSPOSE_16, FlipTranspose, apply_flip_transpose, undo_flip_transpose
from cseg_monai.common.tiling import check_core

__all__ = ["BlockSlidingWindow", "read_box", "window_starts"]

Box = tuple[tuple[int, int], ...]
_ACTIVATIONS: dict[str | None, Callable[[torch.Tensor], torch.Tensor] | None] = {
    None: None,
    "sigmoid": torch.sigmoid,
    "softmax": lambda t: torch.softmax(t, dim=1),
}


def window_starts(length: int, roi: int, overlap: float) -> list[int]:
    """Window starts along one axis of ``length`` voxels, as MONAI's sliding window places them.

    Axes shorter than the window are padded to it first (MONAI pads them symmetrically); the
    starts are then in the padded axis, i.e. always ``[0]``.

    Example:
        >>> window_starts(100, 32, 0.25)
        [0, 24, 48, 68]
        >>> window_starts(20, 32, 0.25)
        [0]
    """
    size = max(length, roi)
    interval = roi if roi == size else max(int(roi * (1 - overlap)), 1)
    return [int(s[0].start) for s in dense_patch_slices((size,), (roi,), (interval,))]


def read_box(array: np.ndarray | torch.Tensor, box: Box, fill: float = 0.0, mode: str = "constant") -> np.ndarray:
    """``array[box]`` as float32 where the box reaches outside the array: ``fill`` (``mode="constant"``),
    or the nearest edge voxel (``mode="replicate"``, as MONAI's ``padding_mode="replicate"``).

    Example:
        >>> read_box(np.arange(4), ((-1, 3),)).tolist()
        [0.0, 0.0, 1.0, 2.0]
        >>> read_box(np.arange(4), ((-2, 6),), mode="replicate").tolist()
        [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 3.0]
    """
    if len(box) != array.ndim:
        raise ValueError(f"box {box} has {len(box)} axes, the array has {array.ndim}")
    if mode not in ("constant", "replicate"):
        raise ValueError(f"mode must be 'constant' or 'replicate', got {mode!r}")
    if mode == "replicate":
        index = [np.clip(np.arange(a, b), 0, n - 1) for (a, b), n in zip(box, array.shape)]
        part = array[tuple(slice(int(i.min()), int(i.max()) + 1) for i in index)]
        part = part.numpy() if isinstance(part, torch.Tensor) else np.asarray(part)
        return np.asarray(part[np.ix_(*[i - i.min() for i in index])], dtype=np.float32)
    out = np.full([b - a for a, b in box], fill, dtype=np.float32)
    src = tuple(slice(max(a, 0), min(b, n)) for (a, b), n in zip(box, array.shape))
    dst = tuple(slice(s.start - a, s.stop - a) for s, (a, _) in zip(src, box))
    if all(s.stop > s.start for s in src):
        part = array[src]
        out[dst] = part.numpy() if isinstance(part, torch.Tensor) else np.asarray(part)
    return out


def _transforms(n: int) -> tuple[FlipTranspose, ...]:
    """The first ``n`` flip-transposes: the dihedral order of DihedralTTAInferer for n <= 8, then each after a z flip."""
    return FLIP_TRANSPOSE_16[:n]


def _forward(t: torch.Tensor, transform: FlipTranspose) -> torch.Tensor:
    return apply_flip_transpose(t, transform)


def _inverse(t: torch.Tensor, transform: FlipTranspose) -> torch.Tensor:
    return undo_flip_transpose(t, transform)


@lru_cache(maxsize=16)
def _axis_map(transform: FlipTranspose) -> tuple[tuple[int, bool], ...]:
    """For each transformed (Z, Y, X) axis: the source axis (0 = Z, 1 = Y, 2 = X) and whether it runs backwards."""
    shape = (2, 3, 4)
    grids = [_forward(g.reshape((1, 1) + shape), transform)[0, 0] for g in torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")]
    out = []
    for axis in range(3):
        step = [0, 0, 0]
        step[axis] = 1
        delta = [int(g[tuple(step)] - g[0, 0, 0]) for g in grids]
        source = next(i for i, d in enumerate(delta) if d)
        out.append((source, delta[source] < 0))
    return tuple(out)


class BlockSlidingWindow:
    """Whole-volume sliding-window inference, computed block by block.

    Args:
        volume_shape: the full volume's shape, without channel (``(Z, Y, X)``, or ``(Y, X)``).
        roi_size: the window, one entry per axis the network sees (the last ``len(roi_size)``
            axes of the volume).
        overlap: as ``SlidingWindowInferer`` (default 0.25).
        mode: ``"gaussian"`` (default) or ``"constant"`` blending.
        sigma_scale: Gaussian sigma as a fraction of the window (default 0.125, MONAI's).
        n_transforms: 1 (no TTA), 2, 4 or 8 dihedral transforms of the last two axes (as
            ``DihedralTTAInferer``), or 16: those and each after a z flip (as
            ``FlipTransposeTTAInferer``; 3D networks only).
        activation: ``None``, ``"sigmoid"`` or ``"softmax"``; applied to each transform's blended
            output before the mean, as DihedralTTAInferer does (``None`` keeps logits).
        reduce: ``"mean"`` (default) or ``"max"`` over the transforms (FlipTransposeTTAInferer's ``reduce``).
        sw_batch_size: windows per network call (default 4); it does not change the result.
        device: where the network runs.

    Raises:
        ValueError: a window of other length than the network's axes, an overlap outside [0, 1),
            or an unknown mode, transform count or activation.

    Example:
        >>> sw = BlockSlidingWindow((8, 100, 100), roi_size=(64, 64), n_transforms=8)
        >>> sw.slice_axes, sw.input_box(((0, 2), (0, 50), (50, 100)))
        (1, ((0, 2), (0, 100), (0, 100)))
    """

    def __init__(
        self,
        volume_shape: Sequence[int],
        roi_size: Sequence[int],
        overlap: float = 0.25,
        mode: str = "gaussian",
        sigma_scale: float = 0.125,
        n_transforms: int = 1,
        activation: str | None = None,
        sw_batch_size: int = 4,
        device: str | torch.device = "cpu",
        reduce: str = "mean",
    ) -> None:
        self.volume_shape = tuple(int(s) for s in volume_shape)
        self.roi_size = tuple(int(r) for r in roi_size)
        n = len(self.roi_size)
        if n not in (2, 3) or n > len(self.volume_shape):
            raise ValueError(f"roi_size {self.roi_size} must have 2 or 3 axes, at most the volume's {self.volume_shape}")
        if min(self.roi_size) < 1 or min(self.volume_shape) < 1:
            raise ValueError(f"roi_size {self.roi_size} and volume_shape {self.volume_shape} must be positive")
        if not 0.0 <= float(overlap) < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if mode not in ("gaussian", "constant"):
            raise ValueError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
        if n_transforms not in (1, 2, 4, 8, 16):
            raise ValueError(f"n_transforms must be 1, 2, 4, 8 or 16, got {n_transforms}")
        if n_transforms == 16 and n != 3:
            raise ValueError(f"16 transforms flip z too: they need a 3D window, got roi_size {self.roi_size}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, got {activation!r}")
        if n_transforms > 1 and self.roi_size[-1] != self.roi_size[-2] and n_transforms > 2:
            raise ValueError(f"rotations by 90 degrees need a square (Y, X) window, got {self.roi_size}")
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        self.slice_axes = len(self.volume_shape) - n
        self.overlap, self.mode, self.sigma_scale = float(overlap), mode, float(sigma_scale)
        self.transforms = _transforms(n_transforms)
        self.activation, self.reduce = _ACTIVATIONS[activation], reduce
        self.sw_batch_size = int(sw_batch_size)
        self.device = torch.device(device)
        self._windows = [self._transform_windows(t) for t in self.transforms]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The axes the network sees (the volume without its slice axes)."""
        return self.volume_shape[self.slice_axes :]

    def _transform_windows(self, transform: FlipTranspose) -> tuple[list[list[tuple[int, int]]], tuple[int, ...]]:
        """Per original axis, the window intervals of ``transform``, and the window shape there."""
        shape = self.spatial_shape
        n = len(shape)
        # source axis (in the network's axes) of each transformed axis, and whether it is reversed
        sources = [(src - (3 - n), rev) for src, rev in _axis_map(transform)[3 - n :]]
        intervals: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        window: list[int] = [0] * n
        for t_axis, (src, rev) in enumerate(sources):
            length, roi = shape[src], self.roi_size[t_axis]
            pad_before = max(roi - length, 0) // 2
            spans = [(s - pad_before, s - pad_before + roi) for s in window_starts(length, roi, self.overlap)]
            intervals[src] = [(length - b, length - a) for a, b in spans] if rev else spans
            window[src] = roi
        return intervals, tuple(window)

    def _hits(self, core: Box) -> list[list[list[tuple[int, int]]]]:
        """Per transform and axis: the window intervals that touch the core."""
        spatial = core[self.slice_axes :]
        return [
            [[iv for iv in axis if iv[0] < c1 and iv[1] > c0] for axis, (c0, c1) in zip(intervals, spatial)]
            for intervals, _ in self._windows
        ]

    def _check_core(self, core: Box) -> Box:
        return check_core(core, self.volume_shape)

    def input_box(self, core: Box) -> Box:
        """The box of input the core needs: the union of the windows that touch it (may reach outside the volume).

        Example:
            >>> BlockSlidingWindow((100,) * 2, roi_size=(32, 32)).input_box(((30, 40), (0, 10)))
            ((0, 56), (0, 32))
        """
        core = self._check_core(core)
        box = list(core[: self.slice_axes])
        for axis in range(len(self.spatial_shape)):
            spans = [iv for hits in self._hits(core) for iv in hits[axis]]
            box.append((min(a for a, _ in spans), max(b for _, b in spans)))
        return tuple(box)

    # -- each window computed once: owned windows, their spill, and the weight sum -------------
    def _check_owned(self) -> None:
        if len(self.transforms) != 1 or self.slice_axes:
            raise ValueError("owned windows need one transform and a network of the volume's axes (n_transforms 1, no slice axes)")

    def _owned(self, core: Box) -> list[list[tuple[int, int]]]:
        """Per axis, the windows whose start (clamped to the volume) lies in the core: each window has one owner."""
        intervals, _ = self._windows[0]
        return [[iv for iv in axis if c0 <= max(iv[0], 0) < c1] for axis, (c0, c1) in zip(intervals, core)]

    def owned_input_box(self, core: Box) -> Box | None:
        """The input the core's owned windows read (may reach outside the volume), or None when it owns none.

        Example:
            >>> sw = BlockSlidingWindow((8, 100), roi_size=(8, 32))  # windows start at 0, 24, 48, 68 along x
            >>> sw.owned_input_box(((0, 8), (0, 50))), sw.owned_input_box(((0, 8), (50, 100)))
            (((0, 8), (0, 80)), ((0, 8), (68, 100)))
        """
        self._check_owned()
        owned = self._owned(self._check_core(core))
        if any(not axis for axis in owned):
            return None
        return tuple((min(a for a, _ in axis), max(b for _, b in axis)) for axis in owned)

    def spill_box(self, core: Box) -> Box:
        """Where the core's owned windows write: from the core's start to their furthest end, inside the volume."""
        box = self.owned_input_box(core)
        if box is None:
            return tuple((c0, c0) for c0, _ in core)
        return tuple((c0, min(b, n)) for (c0, _), (_, b), n in zip(core, box, self.volume_shape))

    def accumulate(self, block: np.ndarray | torch.Tensor, block_box: Box, core: Box, network: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The weighted sum of the core's owned windows over :meth:`spill_box` (not yet divided by the weights).

        Summing the outputs of every block that spills into a core and dividing by
        :meth:`weight_sum` gives the whole-volume blend there, with every window computed once.

        Args:
            block: the input over ``block_box`` (normalised, no channel axis); it must contain :meth:`owned_input_box`.
            block_box / core / network: as :meth:`__call__`.

        Returns:
            ``(C, *spill shape)`` float32 on the CPU (``C`` 0 when the core owns no window).
        """
        core = self._check_core(core)
        need = self.owned_input_box(core)
        spill = self.spill_box(core)
        if need is None:
            return torch.zeros((0,) + tuple(b - a for a, b in spill))
        block = torch.as_tensor(np.asarray(block, dtype=np.float32) if not isinstance(block, torch.Tensor) else block.float())
        if tuple(block.shape) != tuple(b - a for a, b in block_box) or any(n0 < b0 or n1 > b1 for (n0, n1), (b0, b1) in zip(need, block_box)):
            raise ValueError(f"block of shape {tuple(block.shape)} over {block_box} does not cover the owned windows' input {need}")
        weight = compute_importance_map(self.roi_size, mode=self.mode, sigma_scale=self.sigma_scale, device="cpu", dtype=torch.float32)
        image = block[None, None]
        num: torch.Tensor | None = None
        boxes = list(itertools.product(*self._owned(core)))
        for start in range(0, len(boxes), self.sw_batch_size):
            chunk = boxes[start : start + self.sw_batch_size]
            patches = torch.cat([image[(slice(None), slice(None)) + tuple(slice(a - b0, b - b0) for (a, b), (b0, _) in zip(win, block_box))] for win in chunk])
            with torch.no_grad():
                out = network(patches.to(self.device)).float().cpu()
            if tuple(out.shape[2:]) != self.roi_size:
                raise ValueError(f"the network maps a window of {self.roi_size} to {tuple(out.shape[2:])}; it must keep the window's shape")
            if num is None:
                num = torch.zeros((out.shape[1],) + tuple(b - a for a, b in spill), dtype=torch.float32)
            for j, win in enumerate(chunk):
                src = tuple(slice(max(s0, a) - a, min(s1, b) - a) for (a, b), (s0, s1) in zip(win, spill))
                dst = tuple(slice(max(s0, a) - s0, min(s1, b) - s0) for (a, b), (s0, s1) in zip(win, spill))
                num[(slice(None),) + dst] += out[j][(slice(None),) + src] * weight[src]
        assert num is not None
        return num

    def weight_sum(self, core: Box) -> torch.Tensor:
        """The blending weights of all windows summed over ``core`` (what the whole-volume blend divides by)."""
        self._check_owned()
        core = self._check_core(core)
        weight = compute_importance_map(self.roi_size, mode=self.mode, sigma_scale=self.sigma_scale, device="cpu", dtype=torch.float32)
        den = torch.zeros(tuple(b - a for a, b in core), dtype=torch.float32)
        for win in itertools.product(*self._hits(core)[0]):
            src = tuple(slice(max(c0, a) - a, min(c1, b) - a) for (a, b), (c0, c1) in zip(win, core))
            dst = tuple(slice(max(c0, a) - c0, min(c1, b) - c0) for (a, b), (c0, c1) in zip(win, core))
            den[dst] += weight[src]
        return den

    def blend(self, num: torch.Tensor, core: Box) -> torch.Tensor:
        """``num`` (the summed spills over ``core``) divided by :meth:`weight_sum`, then the activation: the whole-volume output there."""
        result = torch.as_tensor(num, dtype=torch.float32) / self.weight_sum(core)
        if self.activation is torch.sigmoid:
            return result.sigmoid_()
        return result if self.activation is None else self.activation(result[None])[0]

    def __call__(self, block: np.ndarray | torch.Tensor, block_box: Box, core: Box, network: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Whole-volume sliding-window output on ``core``.

        Args:
            block: the input over ``block_box`` (no channel axis; zeros outside the volume,
                as :func:`read_box` gives), already normalised as the network expects.
            block_box: the box ``block`` covers; it must contain :meth:`input_box` (core).
            core: the part of the volume to compute.
            network: maps ``(B, 1, *roi_size)`` to ``(B, C, *roi_size)``.

        Returns:
            ``(C, *core shape)`` float32 on the CPU: blended outputs, activated and averaged
            over the transforms.
        """
        core = self._check_core(core)
        block = torch.as_tensor(np.asarray(block, dtype=np.float32) if not isinstance(block, torch.Tensor) else block.float())
        need = self.input_box(core)
        if tuple(block.shape) != tuple(b - a for a, b in block_box) or any(
            n0 < b0 or n1 > b1 for (n0, n1), (b0, b1) in zip(need, block_box)
        ):
            raise ValueError(f"block of shape {tuple(block.shape)} over {block_box} does not cover the input box {need}")
        lead = self.slice_axes
        core_shape = tuple(b - a for a, b in core)
        # slice axes become the batch: (S, 1, *spatial) with S the core's slices
        sl = tuple(slice(c0 - b0, c1 - b0) for (c0, c1), (b0, _) in zip(core[:lead], block_box[:lead]))
        images = block[sl].reshape((-1, 1) + tuple(block.shape[lead:]))
        total: torch.Tensor | None = None
        for transform, hits, (_, window) in zip(self.transforms, self._hits(core), self._windows):
            t_roi = self.roi_size  # windows have the roi's shape in the transformed volume
            weight = compute_importance_map(t_roi, mode=self.mode, sigma_scale=self.sigma_scale, device="cpu", dtype=torch.float32)
            weight = _inverse(weight.reshape((1, 1) + t_roi), transform)[0, 0]
            num: torch.Tensor | None = None
            den = torch.zeros(core_shape[lead:], dtype=torch.float32)
            boxes = list(itertools.product(*hits))
            per_call = max(self.sw_batch_size // images.shape[0], 1)  # windows per network call
            for start in range(0, len(boxes), per_call):
                chunk = boxes[start : start + per_call]
                patches = torch.cat(
                    [images[(slice(None), slice(None)) + tuple(slice(a - b0, b - b0) for (a, b), (b0, _) in zip(win, block_box[lead:]))] for win in chunk]
                )
                with torch.no_grad():
                    out = network(_forward(patches, transform).to(self.device)).float().cpu()
                out = _inverse(out, transform)
                if tuple(out.shape[2:]) != window:
                    raise ValueError(f"the network maps a window of {t_roi} to {tuple(out.shape[2:])}; it must keep the window's shape")
                if num is None:
                    num = torch.zeros((images.shape[0], out.shape[1]) + core_shape[lead:], dtype=torch.float32)
                for j, win in enumerate(chunk):
                    part = out[j * images.shape[0] : (j + 1) * images.shape[0]]
                    src = tuple(slice(max(c0, a) - a, min(c1, b) - a) for (a, b), (c0, c1) in zip(win, core[lead:]))
                    dst = tuple(slice(max(c0, a) - c0, min(c1, b) - c0) for (a, b), (c0, c1) in zip(win, core[lead:]))
                    num[(slice(None), slice(None)) + dst] += part[(slice(None), slice(None)) + src] * weight[src]
                    den[dst] += weight[src]
            result = num.div_(den)  # in place: a block's buffers are the largest arrays of a run
            if self.activation is torch.sigmoid:
                result = result.sigmoid_()
            elif self.activation is not None:
                result = self.activation(result)
            if total is None:
                total = result
            elif self.reduce == "mean":
                total = total.add_(result)
            else:
                total = torch.maximum(total, result, out=total)
            del num, result
        assert total is not None
        if len(self.transforms) > 1 and self.reduce == "mean":
            total = total.div_(len(self.transforms))
        # (S, C, *spatial) -> (C, *slices, *spatial)
        channels = total.shape[1]
        return total.movedim(1, 0).reshape((channels,) + core_shape)
