"""Sample context patches around sparsely labelled voxels (centre-voxel classification)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

from cseg_monai.common.constants import IGNORE_INDEX
from cseg_monai.common.tiling import reflect_indices

__all__ = ["RandSparseCentreVoxelPatchd", "cut_box", "draw_labelled_voxels", "read_label_map"]


def cut_box(array: np.ndarray, starts: Sequence[int], size: Sequence[int], fill: int | None = None) -> np.ndarray:
    """``array[:, starts : starts + size]`` over the spatial axes of a channel-first array.

    Outside the array the box is filled by reflection (``fill=None``; mirror without repeating
    the edge, repeatedly if needed, as :func:`~cseg_monai.common.tiling.reflect_indices`) or with
    the constant ``fill`` (e.g. the ignore index for labels). ``starts`` may be negative.

    Example:
        >>> cut_box(np.arange(4)[None], [-2], [6]).tolist(), cut_box(np.arange(4)[None], [-2], [6], fill=9).tolist()
        ([[2, 1, 0, 1, 2, 3]], [[9, 9, 0, 1, 2, 3]])
    """
    spatial = array.shape[1:]
    if fill is None:
        idx = np.ix_(*[reflect_indices(n, a, a + t) for n, a, t in zip(spatial, starts, size)])
        return array[(slice(None),) + idx]
    out = np.full((array.shape[0],) + tuple(size), fill, dtype=array.dtype)
    src, dst = [], []
    for n, a, t in zip(spatial, starts, size):
        lo, hi = max(a, 0), min(a + t, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - a, hi - a))
    out[(slice(None),) + tuple(dst)] = array[(slice(None),) + tuple(src)]
    return out


def read_label_map(
    data: Mapping, label_key: Hashable, patch_size: Sequence[int], n_classes: int, ignore_index: int
) -> np.ndarray:
    """``data[label_key]`` checked as a ``(1, [Z,] Y, X)`` class-id map; returned as int64.

    Raises:
        KeyError: no ``label_key``.
        ValueError: wrong shape for ``patch_size``'s dimensionality, non-integer values, or
            values outside ``[0, n_classes)`` that are not ``ignore_index``.

    Example:
        >>> read_label_map({"label": np.zeros((1, 4, 4))}, "label", (3, 3), 6, 255).dtype
        dtype('int64')
    """
    if label_key not in data:
        raise KeyError(f"label_key {label_key!r} not in data (keys {list(data)})")
    label = np.asarray(torch.as_tensor(data[label_key]).detach().cpu())
    nd = len(patch_size)
    if label.ndim != nd + 1 or label.shape[0] != 1:
        axes = "Z, Y, X" if nd == 3 else "Y, X"
        raise ValueError(f"label must be (1, {axes}) for patch_size {tuple(patch_size)}, got shape {label.shape}")
    if label.dtype.kind == "f" and not np.array_equal(label, np.round(label)):
        raise ValueError("label must hold integer class ids, found non-integer values")
    label = label.astype(np.int64)
    values = np.unique(label)
    bad = values[((values < 0) | (values >= n_classes)) & (values != ignore_index)]
    if bad.size:
        raise ValueError(f"label values {bad[:10].tolist()} outside [0, {n_classes}) and not ignore_index {ignore_index}")
    return label


def draw_labelled_voxels(
    rng: np.random.RandomState,
    label: np.ndarray,
    n: int,
    class_balanced: bool,
    n_classes: int,
    ignore_index: int,
) -> np.ndarray:
    """Draw ``n`` labelled voxels of ``label`` with replacement: ``(n, label.ndim)`` coordinates.

    Uniformly over the voxels whose label is not ``ignore_index``, or (``class_balanced``)
    first a class uniformly among the classes ``0..n_classes-1`` present, then a voxel of it.

    Example:
        >>> lab = np.full((4, 4), 255); lab[1, 2] = 3
        >>> draw_labelled_voxels(np.random.RandomState(0), lab, 2, True, 6, 255).tolist()
        [[1, 2], [1, 2]]
    """
    flat = label.reshape(-1)
    if class_balanced:
        present = [c for c in range(n_classes) if (flat == c).any()]
        classes = rng.choice(present, size=n)
        picks = np.empty(n, dtype=np.int64)
        for c in np.unique(classes):
            where = np.flatnonzero(flat == c)
            sel = classes == c
            picks[sel] = where[rng.randint(0, where.size, size=int(sel.sum()))]
    else:
        where = np.flatnonzero(flat != ignore_index)
        picks = where[rng.randint(0, where.size, size=n)]
    return np.stack(np.unravel_index(picks, label.shape), axis=1)


class RandSparseCentreVoxelPatchd(Randomizable, MapTransform):
    """Draw ``num_samples`` labelled voxels and cut the context patch around each one.

    The image(s) under ``keys`` are channel-first ``(C, [Z,] Y, X)``; ``label_key`` holds an
    integer map ``(1, [Z,] Y, X)`` where ``ignore_index`` marks unlabelled voxels. Voxels are
    drawn with replacement, uniformly over labelled voxels or (``class_balanced``) first a
    class uniformly among the classes present, then a voxel of that class. Returns a LIST of
    dicts (MONAI multi-sample convention): each key in ``keys`` holds the ``(C, *patch_size)``
    patch (reflect padding at the volume edge; the centre voxel sits at index ``p // 2`` per
    axis), ``label_key`` a ``(1,)`` long tensor with the centre class and ``"centre"`` the
    voxel coordinates (long tensor). Other keys are copied by reference.

    Args:
        keys: image keys to cut patches from.
        label_key: key of the sparse label map.
        patch_size: spatial patch size, 2 or 3 values (matching the image's spatial dims).
        num_samples: how many voxels to draw per call.
        class_balanced: balance the classes (see above).
        ignore_index: label value of unlabelled voxels.
        n_classes: labels must lie in ``[0, n_classes)`` or equal ``ignore_index``.

    Example:
        >>> import torch
        >>> lab = torch.full((1, 8, 8), 255); lab[0, 2, 3] = 1
        >>> t = RandSparseCentreVoxelPatchd(keys="image", patch_size=(5, 5), num_samples=2)
        >>> out = t({"image": torch.rand(1, 8, 8), "label": lab})
        >>> len(out), tuple(out[0]["image"].shape), out[0]["label"].tolist(), out[0]["centre"].tolist()
        (2, (1, 5, 5), [1], [2, 3])
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable] = ("image",),
        label_key: Hashable = "label",
        patch_size: Sequence[int] = (32, 32),
        num_samples: int = 64,
        class_balanced: bool = False,
        ignore_index: int = IGNORE_INDEX,
        n_classes: int = 6,
    ) -> None:
        MapTransform.__init__(self, keys)
        patch = tuple(int(p) for p in patch_size)
        if len(patch) not in (2, 3) or any(p < 1 for p in patch):
            raise ValueError(f"patch_size must be 2 or 3 positive ints, got {tuple(patch_size)}")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if 0 <= int(ignore_index) < int(n_classes):
            raise ValueError(f"ignore_index {ignore_index} must lie outside [0, {n_classes})")
        if label_key in self.keys:
            raise ValueError(f"label_key {label_key!r} must not be one of keys {self.keys}")
        self.label_key = label_key
        self.patch_size = patch
        self.num_samples = int(num_samples)
        self.class_balanced = bool(class_balanced)
        self.ignore_index = int(ignore_index)
        self.n_classes = int(n_classes)
        self._centres: np.ndarray | None = None

    def randomize(self, label: np.ndarray) -> None:
        """Choose ``num_samples`` centres (``(N, ndim)`` array) among labelled voxels of ``label``."""
        self._centres = draw_labelled_voxels(
            self.R, label, self.num_samples, self.class_balanced, self.n_classes, self.ignore_index
        )

    def _check_label(self, data: Mapping) -> np.ndarray:
        label = read_label_map(data, self.label_key, self.patch_size, self.n_classes, self.ignore_index)[0]
        if not (label != self.ignore_index).any():
            raise ValueError(f"label has no labelled voxel: every voxel is ignore_index {self.ignore_index}")
        return label

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        label = self._check_label(data)
        images = {}
        for key in self.key_iterator(dict(data)):
            img = np.asarray(torch.as_tensor(data[key]).detach().cpu())
            if img.ndim != label.ndim + 1 or img.shape[1:] != label.shape:
                raise ValueError(
                    f"{key!r} shape {img.shape} must be (C, *{label.shape}) to match label {self.label_key!r}"
                )
            images[key] = img
        self.randomize(label)
        centres = self._centres
        patches = {
            key: [cut_box(img, [c - p // 2 for c, p in zip(centre, self.patch_size)], self.patch_size) for centre in centres]
            for key, img in images.items()
        }
        classes = label[tuple(centres.T)]
        out = []
        for n in range(self.num_samples):
            item = dict(data)
            for key in images:
                item[key] = torch.from_numpy(np.ascontiguousarray(patches[key][n]))
            item[self.label_key] = torch.tensor([classes[n]], dtype=torch.long)
            item["centre"] = torch.as_tensor(centres[n], dtype=torch.long)
            out.append(item)
        return out
