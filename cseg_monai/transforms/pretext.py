"""Targets of the self-supervised pretexts: mask a patch's centre region, keep what to predict.

:class:`MaskCentreRegiond` blanks the ``(2r+1)^n`` centre region of a context patch and stores
the target: the region's original intensities as a ``(K, 1[, 1][, 1])`` column (centre-region
regression: the centre-voxel net's head predicts ``K = (2r+1)^n`` values for the region) or the
whole original patch (masked VAE: reconstruct everything). ``radius`` None masks nothing (a
plain VAE).

The centre of a patch of even extent ``n`` is voxel ``n // 2``, the voxel a centre-voxel
classifier labels (:mod:`cseg_monai.transforms.centre_voxel_tiles`).

Example:
    >>> import numpy as np
    >>> d = MaskCentreRegiond("image", radius=1)({"image": np.arange(25, dtype=np.float32).reshape(1, 5, 5)})
    >>> d["image"][0].tolist()[2], d["label"].reshape(-1).tolist()
    ([10.0, 0.0, 0.0, 0.0, 14.0], [6.0, 7.0, 8.0, 11.0, 12.0, 13.0, 16.0, 17.0, 18.0])
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["MaskCentreRegiond", "TARGETS", "centre_region_slices", "paste_centre_region"]

#: What :class:`MaskCentreRegiond` stores as the target.
TARGETS = ("centre", "patch")


def centre_region_slices(spatial_shape: tuple[int, ...], radius: int) -> tuple[slice, ...]:
    """Slices of the ``(2 radius + 1)`` cube around voxel ``n // 2`` of each axis.

    Raises:
        ValueError: the region does not fit the patch.

    Example:
        >>> centre_region_slices((5, 8), 1)
        (slice(1, 4, None), slice(3, 6, None))
    """
    if not isinstance(radius, (int, np.integer)) or isinstance(radius, bool) or radius < 0:
        raise ValueError(f"radius must be a whole number >= 0, got {radius!r}")
    out = []
    for n in spatial_shape:
        c = n // 2
        if c - radius < 0 or c + radius + 1 > n:
            raise ValueError(f"a centre region of radius {radius} ({2 * radius + 1} voxels) does not fit a patch of {tuple(spatial_shape)}")
        out.append(slice(c - radius, c + radius + 1))
    return tuple(out)


def paste_centre_region(patch: Any, values: Any, radius: int) -> np.ndarray:
    """``patch`` (``(C, *spatial)``) with its centre region replaced by ``values`` (``K * C`` values).

    Example:
        >>> paste_centre_region(np.zeros((1, 3, 3)), np.ones(1), 0)[0].tolist()
        [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    out = np.array(patch.detach().cpu() if isinstance(patch, torch.Tensor) else patch, dtype=np.float32, copy=True)
    vals = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float32)
    region = (slice(None), *centre_region_slices(out.shape[1:], radius))
    shape = out[region].shape
    if vals.size != int(np.prod(shape)):
        raise ValueError(f"{vals.size} values for a centre region of shape {shape}")
    out[region] = vals.reshape(shape)
    return out


class MaskCentreRegiond(MapTransform):
    """Blank the centre region of ``image`` and store the pretext target under ``target_key``.

    Args:
        keys: the patch key(s) (``(C, *spatial)``).
        radius: half-width ``r`` of the ``(2r+1)^n`` region (0: the centre voxel); None masks
            nothing (only with ``target="patch"``).
        target: ``"centre"`` (the region's values as ``(C * K, 1, ...)``) or ``"patch"`` (the
            whole original patch).
        fill: value written into the region (0: the patches are scaled to [0, 1]).
        target_key: where the target goes.

    Raises:
        ValueError: bad radius, target or fill; a region larger than the patch.
    """

    def __init__(
        self,
        keys: KeysCollection,
        radius: int | None = 0,
        target: str = "centre",
        fill: float = 0.0,
        target_key: str = "label",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if target not in TARGETS:
            raise ValueError(f"target must be one of {list(TARGETS)}, got {target!r}")
        if radius is None and target == "centre":
            raise ValueError("target 'centre' needs a radius (the region to predict)")
        if radius is not None and (not isinstance(radius, (int, np.integer)) or isinstance(radius, bool) or radius < 0):
            raise ValueError(f"radius must be a whole number >= 0 or None, got {radius!r}")
        if not isinstance(fill, (int, float)) or isinstance(fill, bool) or not np.isfinite(fill):
            raise ValueError(f"fill must be a finite number, got {fill!r}")
        if len(self.keys) != 1:
            raise ValueError(f"MaskCentreRegiond takes one patch key, got {list(self.keys)}")
        self.radius, self.target, self.fill, self.target_key = radius, target, float(fill), target_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            patch = d[key]
            as_tensor = isinstance(patch, torch.Tensor)
            arr = patch.detach().clone() if as_tensor else np.array(patch, dtype=np.float32, copy=True)
            original = arr.clone() if as_tensor else arr.copy()
            if self.radius is not None:
                region = (slice(None), *centre_region_slices(tuple(arr.shape[1:]), int(self.radius)))
                centre = original[region]
                arr[region] = self.fill
            if self.target == "centre":
                column = centre.reshape(-1, *([1] * (arr.ndim - 1)))
                d[self.target_key] = column
            else:
                d[self.target_key] = original
            d[key] = arr
        return d
