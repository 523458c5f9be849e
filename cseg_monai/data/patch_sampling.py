"""Patches that cover every voxel of every image once per epoch, in shuffled order, with jitter.

A self-supervised pretext sees patches, not images. The system this project reproduces drew
them with a sampler that never advanced, so its pretraining only ever saw the first 8,192
patches of one corner of the volume. :class:`CoveringPatchDataset` is a map-style dataset of
grid positions instead: its length is the number of patches that tile all images, an epoch
(a ``DataLoader`` with ``shuffle=True``) visits every one of them, and together their
footprints cover every voxel of every image, border included. Each visit moves its patch by a
random jitter of at most ``(patch - stride) // 2`` voxels per axis (the first and last patch of
an axis stay at the border), so the patches differ from epoch to epoch and the cover still has
no gap.

Example:
    >>> import numpy as np
    >>> ds = CoveringPatchDataset([np.zeros((1, 10, 13), np.float32)], patch_size=(4, 4), stride=(2, 2), seed=0)
    >>> len(ds), ds[0]["image"].shape
    (24, (1, 4, 4))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from monai.transforms import Randomizable
from torch.utils.data import Dataset

__all__ = ["CoveringPatchDataset", "grid_starts"]


def grid_starts(extent: int, patch: int, stride: int) -> list[int]:
    """Patch starts along one axis: ``0, stride, 2 stride, ...`` and ``extent - patch`` last.

    Raises:
        ValueError: ``patch`` longer than ``extent``, or ``stride`` not in ``[1, patch]``
            (a longer stride would leave gaps).

    Example:
        >>> grid_starts(10, 4, 3)
        [0, 3, 6]
        >>> grid_starts(11, 4, 3)
        [0, 3, 6, 7]
    """
    if patch > extent:
        raise ValueError(f"a patch of {patch} voxels does not fit an axis of {extent}")
    if not 1 <= stride <= patch:
        raise ValueError(f"stride must be in [1, patch] = [1, {patch}] so that the patches leave no gap, got {stride}")
    starts = list(range(0, extent - patch + 1, stride))
    if starts[-1] != extent - patch:
        starts.append(extent - patch)
    return starts


class CoveringPatchDataset(Dataset, Randomizable):
    """Every grid patch of every image, each with a fresh random jitter, as ``{"image": (C, *patch)}``.

    Args:
        images: ``(C, *spatial)`` arrays (2D or 3D, all with the same number of axes), or
            items that ``load`` turns into such arrays (each is loaded once, when the dataset
            is made).
        patch_size: patch extent per spatial axis.
        stride: grid step per axis, in ``[1, patch]``; default ``patch // 2`` (rounded up).
        transform: applied to each patch dict (augmentation, the pretext's masking).
        load: turns an item of ``images`` into an array; None: the items are arrays.
        jitter: move inner patches by a random offset up to ``(patch - stride) // 2`` per axis.
        seed: of the jitter (also re-seeded by MONAI's ``set_determinism`` through
            :meth:`set_random_state`).
        names: for messages, one per image (default ``image <i>``).

    Items: ``{"image": float32 array, "source": image index, "start": patch start}``.

    It is also a transform, for the bundles' shared data pipeline (a MONAI dataset over a
    datalist, then a ``Compose``): :meth:`datalist` lists ``{"patch_index": i}`` for every
    patch, and calling the sampler on such an item draws that patch (jittered afresh each
    time; MONAI's ``CacheDataset`` never caches a ``Randomizable``).

    Raises:
        ValueError: an image smaller than the patch, with another number of axes, or a bad
            stride; the image is named.
    """

    def __init__(
        self,
        images: Sequence[Any],
        patch_size: Sequence[int],
        stride: Sequence[int] | None = None,
        transform: Callable[[dict], Any] | None = None,
        load: Callable[[Any], np.ndarray] | None = None,
        jitter: bool = True,
        seed: int = 0,
        names: Sequence[str] | None = None,
    ) -> None:
        if not len(images):
            raise ValueError("CoveringPatchDataset needs at least one image")
        self.patch_size = tuple(int(p) for p in patch_size)
        if any(p < 1 for p in self.patch_size):
            raise ValueError(f"patch_size must be positive, got {tuple(patch_size)}")
        nd = len(self.patch_size)
        self.stride = tuple(int(s) for s in stride) if stride is not None else tuple(math.ceil(p / 2) for p in self.patch_size)
        if len(self.stride) != nd:
            raise ValueError(f"stride {self.stride} must have one value per axis of patch_size {self.patch_size}")
        self.names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        self.images = []
        for i, item in enumerate(images):
            arr = np.asarray(load(item) if load is not None else item, dtype=np.float32)
            if arr.ndim != nd + 1:
                raise ValueError(f"{self.names[i]}: expected (C, {nd} spatial axes), got shape {arr.shape}")
            self.images.append(arr)
        self.starts = []
        for i, arr in enumerate(self.images):
            try:
                self.starts.append([grid_starts(n, p, s) for n, p, s in zip(arr.shape[1:], self.patch_size, self.stride)])
            except ValueError as err:
                raise ValueError(f"{self.names[i]} (spatial shape {arr.shape[1:]}), patch {self.patch_size}: {err}") from None
        self.counts = np.array([math.prod(len(s) for s in starts) for starts in self.starts], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.jitter = tuple((p - s) // 2 if jitter else 0 for p, s in zip(self.patch_size, self.stride))
        self.transform = transform
        self.R = np.random.RandomState(seed)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> CoveringPatchDataset:
        """Re-seed the jitter (MONAI's ``Randomizable`` protocol)."""
        self.R = state if state is not None else np.random.RandomState(seed)
        return self

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw up front: the jitter is drawn per patch."""

    def datalist(self) -> list[dict[str, int]]:
        """``[{"patch_index": 0}, {"patch_index": 1}, ...]``, one item per patch of an epoch."""
        return [{"patch_index": i} for i in range(len(self))]

    def __call__(self, item: dict[str, Any]) -> Any:
        """The patch of ``item["patch_index"]`` (the item's other keys are kept)."""
        if not isinstance(item, dict) or "patch_index" not in item:
            raise ValueError(f"CoveringPatchDataset draws patches for {{'patch_index': i}} items, got {item!r}"[:200])
        return {**{k: v for k, v in item.items() if k != "patch_index"}, **self[int(item["patch_index"])]}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def position(self, index: int, jitter: bool = False) -> tuple[int, tuple[int, ...]]:
        """``(image index, patch start)`` of patch ``index``, jittered if asked."""
        if not 0 <= index < len(self):
            raise IndexError(f"patch index {index} out of range [0, {len(self)})")
        source = int(np.searchsorted(self.offsets, index, side="right") - 1)
        flat = index - int(self.offsets[source])
        starts = self.starts[source]
        grid = np.unravel_index(flat, [len(s) for s in starts])
        out = []
        for axis, g in enumerate(grid):
            axis_starts = starts[axis]
            start = axis_starts[g]
            amp = self.jitter[axis]
            if jitter and amp and 0 < g < len(axis_starts) - 1:
                last = self.images[source].shape[1 + axis] - self.patch_size[axis]
                start = int(np.clip(start + self.R.randint(-amp, amp + 1), 0, last))
            out.append(int(start))
        return source, tuple(out)

    def __getitem__(self, index: int) -> Any:
        source, start = self.position(int(index), jitter=True)
        window = (slice(None), *(slice(s, s + p) for s, p in zip(start, self.patch_size)))
        item = {"image": self.images[source][window].copy(), "source": source, "start": np.asarray(start)}
        return self.transform(item) if self.transform is not None else item
