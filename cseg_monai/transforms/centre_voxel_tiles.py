"""Tiles for training and validating unpadded centre-voxel nets many voxels at a time.

An unpadded (translation-equivariant) centre-voxel net with patch ``p`` and accumulated stride
``s`` (``net.patch_size``, ``net.strides``), applied to a tile of ``T = p + s * (g - 1)``
voxels per axis, returns a ``g`` grid of outputs: output ``j`` is EXACTLY the net's
prediction on the patch starting at ``s * j``, i.e. for the voxel at tile index
``p // 2 + s * j``. One forward pass of a tile thus trains ``prod(g)`` centre voxels while
sharing the convolutions of overlapping patches -- for ``4_conv_resnet_valid`` (p 102, s 16)
a 16 x 16 grid costs about 5 forward passes of one patch instead of 256.

* :class:`RandCentreVoxelTiled`: draw labelled voxels (uniform or class-balanced, like
  :class:`~cseg_monai.transforms.RandSparseCentreVoxelPatchd`) and cut a tile that puts each
  at a random grid position; the image is reflect-padded at the volume edge, the label is
  padded with ``ignore_index``. Returns full-size tiles, so flips / rot90 / intensity
  augmentation can follow.
* :class:`CentreVoxelTiled`: the deterministic version for validation: one tile over the whole
  volume, its grid on voxels ``0, s, 2s, ...`` of every axis.
* :class:`CentreVoxelGridd`: after augmentation, subsample the label tile to the grid
  (``label[p // 2 + s * j]``), the target of the net's output.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

from cseg_monai.common.constants import IGNORE_INDEX
from cseg_monai.transforms.sparse_sampling import cut_box, draw_labelled_voxels, read_label_map

__all__ = ["RandCentreVoxelTiled", "CentreVoxelTiled", "CentreVoxelGridd", "tile_size"]


def _ints(name: str, value: Sequence[int] | int, n: int | None = None, minimum: int = 1) -> tuple[int, ...]:
    vals = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if n is not None and len(vals) == 1:
        vals = vals * n
    if not vals or (n is not None and len(vals) != n) or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in vals
    ):
        want = f"{n} " if n else ""
        raise ValueError(f"{name} must be {want}int(s) >= {minimum}, got {value!r}")
    return tuple(int(v) for v in vals)


def tile_size(patch_size: Sequence[int], strides: Sequence[int], grid_size: Sequence[int]) -> tuple[int, ...]:
    """``p + s * (g - 1)`` per axis: the tile whose net output is a ``grid_size`` grid.

    Example:
        >>> tile_size((102, 102), (16, 16), (16, 16))
        (342, 342)
    """
    p = _ints("patch_size", patch_size)
    s = _ints("strides", strides, len(p))
    g = _ints("grid_size", grid_size, len(p))
    return tuple(pi + si * (gi - 1) for pi, si, gi in zip(p, s, g))


class _TileBase(MapTransform):
    def __init__(
        self,
        keys: Hashable | Sequence[Hashable],
        label_key: Hashable,
        patch_size: Sequence[int],
        strides: Sequence[int],
        ignore_index: int,
        n_classes: int,
    ) -> None:
        MapTransform.__init__(self, keys)
        self.patch_size = _ints("patch_size", patch_size)
        if len(self.patch_size) not in (2, 3):
            raise ValueError(f"patch_size must have 2 or 3 entries, got {tuple(patch_size)}")
        self.strides = _ints("strides", strides, len(self.patch_size))
        if label_key in self.keys:
            raise ValueError(f"label_key {label_key!r} must not be one of keys {self.keys}")
        if int(n_classes) < 1 or 0 <= int(ignore_index) < int(n_classes):
            raise ValueError(f"ignore_index {ignore_index} must lie outside the classes [0, {n_classes})")
        self.label_key = label_key
        self.ignore_index = int(ignore_index)
        self.n_classes = int(n_classes)

    def _arrays(self, data: Mapping) -> tuple[np.ndarray, dict[Hashable, np.ndarray]]:
        label = read_label_map(data, self.label_key, self.patch_size, self.n_classes, self.ignore_index)
        images = {}
        for key in self.key_iterator(dict(data)):
            img = np.asarray(torch.as_tensor(data[key]).detach().cpu())
            if img.ndim != label.ndim or img.shape[1:] != label.shape[1:]:
                raise ValueError(f"{key!r} shape {img.shape} must be (C, *{label.shape[1:]}) to match the label")
            images[key] = img
        return label, images

    def _tile(self, data: Mapping, label: np.ndarray, images: dict, starts: Sequence[int], size: Sequence[int]) -> dict:
        item = dict(data)
        for key, img in images.items():
            item[key] = torch.from_numpy(np.ascontiguousarray(cut_box(img, starts, size)))
        item[self.label_key] = torch.from_numpy(cut_box(label, starts, size, fill=self.ignore_index))
        item["tile_start"] = torch.as_tensor(list(starts), dtype=torch.long)
        return item


class RandCentreVoxelTiled(Randomizable, _TileBase):
    """Draw ``num_samples`` labelled voxels; cut a tile that puts each at a random grid position.

    Inputs are channel-first ``(C, [Z,] Y, X)`` images under ``keys`` and a ``(1, [Z,] Y, X)``
    integer label map (``ignore_index`` = unlabelled). Returns a LIST of ``num_samples``
    dicts, each with the image tiles ``(C, *T)``, the label tile ``(1, *T)`` (long) and
    ``"tile_start"`` (tile origin in volume coordinates; may be negative), ``T`` =
    :func:`tile_size`. Follow with augmentation and :class:`CentreVoxelGridd`.

    Args:
        keys: image keys.
        label_key: label key.
        patch_size: the net's ``patch_size``.
        strides: the net's ``strides``.
        grid_size: outputs per axis of one tile (an int for all axes).
        num_samples: tiles per call.
        class_balanced: draw a class uniformly among those present, then a voxel of it.
        ignore_index: unlabelled value.
        n_classes: labels lie in ``[0, n_classes)`` or equal ``ignore_index``.

    Example:
        >>> lab = torch.full((1, 40, 40), 255); lab[0, 20, 21] = 3
        >>> t = RandCentreVoxelTiled("image", patch_size=(9, 9), strides=(2, 2), grid_size=4, num_samples=1)
        >>> t.set_random_state(0)  # doctest: +ELLIPSIS
        <...>
        >>> out = t({"image": torch.rand(1, 40, 40), "label": lab})[0]
        >>> tuple(out["image"].shape), int((out["label"] == 3).sum())
        ((1, 15, 15), 1)
        >>> grid = CentreVoxelGridd("label", patch_size=(9, 9), strides=(2, 2))(out)["label"]
        >>> tuple(grid.shape), int((grid == 3).sum())
        ((1, 4, 4), 1)
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable] = ("image",),
        label_key: Hashable = "label",
        patch_size: Sequence[int] = (102, 102),
        strides: Sequence[int] = (16, 16),
        grid_size: int | Sequence[int] = 8,
        num_samples: int = 4,
        class_balanced: bool = True,
        ignore_index: int = IGNORE_INDEX,
        n_classes: int = 6,
    ) -> None:
        _TileBase.__init__(self, keys, label_key, patch_size, strides, ignore_index, n_classes)
        self.grid_size = _ints("grid_size", grid_size, len(self.patch_size))
        self.tile = tile_size(self.patch_size, self.strides, self.grid_size)
        self.num_samples = _ints("num_samples", num_samples)[0]
        self.class_balanced = bool(class_balanced)

    def randomize(self, label: np.ndarray) -> None:
        """Draw the centre voxels and their grid positions."""
        self._centres = draw_labelled_voxels(
            self.R, label, self.num_samples, self.class_balanced, self.n_classes, self.ignore_index
        )
        self._slots = np.stack([self.R.randint(0, g, size=self.num_samples) for g in self.grid_size], axis=1)

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        label, images = self._arrays(data)
        if not (label != self.ignore_index).any():
            raise ValueError(f"label has no labelled voxel: every voxel is ignore_index {self.ignore_index}")
        self.randomize(label[0])
        out = []
        for centre, slot in zip(self._centres, self._slots):
            starts = [int(c) - p // 2 - s * int(j) for c, p, s, j in zip(centre, self.patch_size, self.strides, slot)]
            out.append(self._tile(data, label, images, starts, self.tile))
        return out


class CentreVoxelTiled(_TileBase):
    """One tile over the whole volume whose grid covers voxels ``0, s, 2s, ...`` of every axis.

    The tile starts at ``-p // 2`` (reflect padding) and has ``g = ceil(n / s)`` grid points per
    axis, so the net's output on it predicts every ``s``-th voxel: an unbiased subsample of
    the labelled voxels for cheap validation (the dense answer is
    :class:`~cseg_monai.inferers.CentreVoxelInferer`'s). With ``shifts`` (a list of per-axis
    offsets in ``[0, s)``) it returns a LIST of such tiles, the grid of each moved by its
    shift (voxels ``shift + k s``), to validate on more voxels at the same cost per voxel.

    Example:
        >>> out = CentreVoxelTiled("image", patch_size=(9, 9), strides=(2, 2))(
        ...     {"image": torch.rand(1, 10, 7), "label": torch.zeros(1, 10, 7)})
        >>> tuple(out["image"].shape), tuple(CentreVoxelGridd("label", (9, 9), (2, 2))(out)["label"].shape)
        ((1, 17, 15), (1, 5, 4))
    """

    def __init__(
        self,
        keys: Hashable | Sequence[Hashable] = ("image",),
        label_key: Hashable = "label",
        patch_size: Sequence[int] = (102, 102),
        strides: Sequence[int] = (16, 16),
        ignore_index: int = IGNORE_INDEX,
        n_classes: int = 6,
        shifts: Sequence[Sequence[int]] | None = None,
    ) -> None:
        _TileBase.__init__(self, keys, label_key, patch_size, strides, ignore_index, n_classes)
        self.shifts = None
        if shifts is not None:
            self.shifts = [_ints("shift", s, len(self.patch_size), minimum=0) for s in shifts]
            if not self.shifts or any(a >= s for sh in self.shifts for a, s in zip(sh, self.strides)):
                raise ValueError(f"shifts must be a non-empty list of offsets in [0, strides {self.strides}), got {shifts}")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any] | list[dict[Hashable, Any]]:
        label, images = self._arrays(data)
        shifts = self.shifts or [(0,) * len(self.patch_size)]
        # every shifted grid has the same size, so the tiles batch: ceil((n - largest shift) / s)
        largest = np.max(shifts, axis=0)
        grid = [max(1, -(-(n - m) // s)) for n, m, s in zip(label.shape[1:], largest, self.strides)]
        size = tile_size(self.patch_size, self.strides, grid)
        out = [self._tile(data, label, images, [sh - p // 2 for sh, p in zip(shift, self.patch_size)], size)
               for shift in shifts]
        return out if self.shifts is not None else out[0]


class CentreVoxelGridd(MapTransform):
    """Subsample label tiles ``(1, *T)`` to the net's output grid: ``label[p // 2 + s * j]``.

    Args:
        keys: label keys.
        patch_size: the net's ``patch_size``.
        strides: the net's ``strides``.

    Raises:
        ValueError: a tile whose size is not ``p + s * (g - 1)`` for an integer ``g >= 1``.

    Example:
        >>> CentreVoxelGridd("label", (3, 3), (2, 2))({"label": torch.arange(25).reshape(1, 5, 5)})["label"]
        tensor([[[ 6,  8],
                 [16, 18]]])
    """

    def __init__(self, keys: Hashable | Sequence[Hashable], patch_size: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__(keys)
        self.patch_size = _ints("patch_size", patch_size)
        self.strides = _ints("strides", strides, len(self.patch_size))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            lab = torch.as_tensor(d[key])
            spatial = tuple(lab.shape[1:])
            if len(spatial) != len(self.patch_size):
                raise ValueError(f"{key!r}: expected (1, *{len(self.patch_size)} axes), got shape {tuple(lab.shape)}")
            index: list[Any] = [slice(None)]
            for t, p, s in zip(spatial, self.patch_size, self.strides):
                if t < p or (t - p) % s:
                    raise ValueError(f"{key!r}: tile size {spatial} is not patch {self.patch_size} + strides "
                                     f"{self.strides} x (grid - 1)")
                index.append(slice(p // 2, t - (p - 1 - p // 2), s))
            d[key] = lab[tuple(index)].long()
        return d
