"""Targets of the self-supervised pretexts: mask part of a patch, keep what to predict.

:class:`MaskCentreRegiond` blanks the ``(2r+1)^n`` centre region of a context patch and stores
the target: the region's original intensities as a ``(K, 1[, 1][, 1])`` column (centre-region
regression: the centre-voxel net's head predicts ``K = (2r+1)^n`` values for the region) or the
whole original patch (masked VAE: reconstruct everything). ``radius`` None masks nothing (a
plain VAE).

:class:`MaskCubesd` is the masked-image-modelling mask for U-Net / SwinUNETR encoders: random
cubes dropped (MONAI's ``RandCoarseDropoutd``) or shuffled (``RandCoarseShuffled``), the target
being the original patch with the mask as one more channel, so that the loss
(:class:`cseg_monai.losses.MaskedReconstructionLoss`) scores the masked voxels only.

:class:`PixProViewsd` makes PixPro's two overlapping views of one image, each with the
coordinates of its pixels in the original image.

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
from monai.transforms import GaussianSmooth, MapTransform, RandCoarseDropoutd, RandCoarseShuffled, Randomizable

__all__ = ["CUBE_METHODS", "MaskCentreRegiond", "MaskCubesd", "PixProViewsd", "TARGETS", "centre_region_slices", "paste_centre_region"]

#: What :class:`MaskCentreRegiond` stores as the target.
TARGETS = ("centre", "patch")

#: How :class:`MaskCubesd` hides its cubes.
CUBE_METHODS = ("dropout", "shuffle")


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


def _positive_sizes(name: str, value: Any, required: bool) -> None:
    if value is None and not required:
        return
    values = [value] if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{name} must be a whole number >= 1 or a list of them (one per spatial axis), got {value!r}")


class MaskCubesd(Randomizable, MapTransform):
    """Hide random cubes of ``image`` (masked image modelling); the target is the original plus the mask.

    The cubes are drawn and hidden by MONAI's own transforms: ``method="dropout"``
    (``RandCoarseDropoutd``: the cubes are filled with ``fill_value``, 0 being the mean of a
    z-scored image) or ``"shuffle"`` (``RandCoarseShuffled``: the voxels inside each cube are
    permuted, so the intensity histogram stays and only the structure is lost). The mask is read
    from the cubes MONAI drew. ``target_key`` receives ``(C + 1, *spatial)``: the ``C`` original
    channels, then the mask (1 = hidden), which is what
    :class:`cseg_monai.losses.MaskedReconstructionLoss` and
    :class:`cseg_monai.metrics.MaskedErrorMetric` expect.

    Args:
        keys: the patch key (``(C, *spatial)``; one key).
        method: one of :data:`CUBE_METHODS`.
        holes: the number of cubes (the least, with ``max_holes``).
        spatial_size: a cube's side (the least, with ``max_spatial_size``); an int or one per axis.
        max_holes: draw the number of cubes from ``holes..max_holes``.
        max_spatial_size: draw each cube's sides up to this.
        fill_value: what fills a dropped cube (``"dropout"`` only).
        target_key: where the target goes.
        seed: None (training: new cubes at every call) or a seed that every call starts from, so
            that every patch gets the same cubes (validation: a score that moves only with the network).

    Raises:
        ValueError: an unknown method, sizes that are not whole numbers >= 1, more than one key.

    Example:
        >>> import numpy as np
        >>> t = MaskCubesd("image", holes=2, spatial_size=4)
        >>> _ = t.set_random_state(0)
        >>> d = t({"image": np.ones((1, 16, 16), np.float32)})
        >>> tuple(d["label"].shape), bool((d["image"][0] == 0).equal(d["label"][1] == 1))
        ((2, 16, 16), True)
    """

    def __init__(
        self,
        keys: KeysCollection,
        method: str = "dropout",
        holes: int = 8,
        spatial_size: int | list[int] = 16,
        max_holes: int | None = None,
        max_spatial_size: int | list[int] | None = None,
        fill_value: float = 0.0,
        target_key: str = "label",
        seed: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"MaskCubesd takes one patch key, got {list(self.keys)}")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed must be None or a whole number >= 0, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        if method not in CUBE_METHODS:
            raise ValueError(f"method must be one of {list(CUBE_METHODS)}, got {method!r}")
        _positive_sizes("holes", holes, True)
        _positive_sizes("spatial_size", spatial_size, True)
        _positive_sizes("max_holes", max_holes, False)
        _positive_sizes("max_spatial_size", max_spatial_size, False)
        if not isinstance(holes, (int, np.integer)) or (max_holes is not None and (not isinstance(max_holes, (int, np.integer)) or max_holes < holes)):
            raise ValueError(f"holes must be a whole number and max_holes None or >= holes, got {holes!r} and {max_holes!r}")
        if not isinstance(fill_value, (int, float)) or isinstance(fill_value, bool) or not np.isfinite(fill_value):
            raise ValueError(f"fill_value must be a finite number, got {fill_value!r}")
        self.method, self.target_key = method, target_key
        size = list(spatial_size) if isinstance(spatial_size, (list, tuple)) else spatial_size
        max_size = list(max_spatial_size) if isinstance(max_spatial_size, (list, tuple)) else max_spatial_size
        if method == "dropout":
            self.hider: MapTransform = RandCoarseDropoutd(self.keys, holes=int(holes), spatial_size=size, fill_value=float(fill_value),
                                                          max_holes=max_holes, max_spatial_size=max_size, prob=1.0)  # fmt: skip
        else:
            self.hider = RandCoarseShuffled(self.keys, holes=int(holes), spatial_size=size, max_holes=max_holes, max_spatial_size=max_size, prob=1.0)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> MaskCubesd:
        super().set_random_state(seed, state)
        self.hider.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:  # the cubes are drawn by the MONAI transform
        return None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        key = self.keys[0]
        if key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"MaskCubesd: the item has no {key!r} (keys {sorted(map(str, d))})")
        original = torch.as_tensor(d[key], dtype=torch.float32).detach().clone()
        if original.ndim < 3:
            raise ValueError(f"MaskCubesd: expected a channel-first 2D or 3D patch, got shape {tuple(original.shape)}")
        d[key] = original.clone()
        if self.seed is not None:
            self.set_random_state(self.seed)
        d = dict(self.hider(d))
        inner = self.hider.dropper if self.method == "dropout" else self.hider.shuffle
        mask = torch.zeros((1, *original.shape[1:]), dtype=original.dtype)
        for coords in inner.hole_coords:
            mask[(slice(None), *coords[1:])] = 1.0
        d[self.target_key] = torch.cat([torch.as_tensor(original), mask.to(original.device)], dim=0)
        return d


class PixProViewsd(Randomizable, MapTransform):
    """Two overlapping random views of ``image`` for PixPro, with their pixels' coordinates in the original.

    Each view is a random crop (area between ``scale`` of the image, the image's aspect), resized to
    ``view_size``, randomly flipped along every spatial axis and rotated by a multiple of 90 degrees
    in the last two axes (when the view is square there), then given its own intensity change
    (``intensity``: contrast scale 0.8-1.25, shift +-0.2, Gaussian blur sigma 0-1, Gaussian noise
    sigma 0-0.1, for a z-scored image). The coordinates of every view pixel in the original image
    go through the same crop, resize, flips and rotation, so that
    :func:`cseg_monai.common.pretext.positive_pairs` finds the pixels the two views share, whatever
    was done to them. Crops are drawn again until their overlap is at least ``min_overlap`` of the
    smaller one (``max_tries`` at most).

    Output: ``image`` becomes ``(2C, *view_size)`` (the two views in the channels) and
    ``coords_key`` receives ``(2 n, *view_size)`` (``n`` = spatial dims; view 1's coordinates, then view 2's).

    Args:
        keys: the image key (``(C, *spatial)``, 2D or 3D).
        view_size: each view's spatial shape.
        scale: the range of a crop's area (volume) as a fraction of the image's.
        min_overlap: the least overlap of the two crops, as a fraction of the smaller.
        intensity: per-view intensity changes.
        coords_key: where the coordinates go.
        seed: None (training) or a seed every call starts from (validation: the same views every time).
        max_tries: crop draws before giving up on ``min_overlap``.

    Example:
        >>> import numpy as np
        >>> t = PixProViewsd("image", view_size=(16, 16), seed=0)
        >>> d = t({"image": np.random.rand(1, 64, 64).astype(np.float32)})
        >>> tuple(d["image"].shape), tuple(d["label"].shape)
        ((2, 16, 16), (4, 16, 16))
    """

    def __init__(
        self,
        keys: KeysCollection,
        view_size: list[int] | tuple[int, ...] = (192, 192),
        scale: tuple[float, float] = (0.3, 1.0),
        min_overlap: float = 0.1,
        intensity: bool = True,
        coords_key: str = "label",
        seed: int | None = None,
        max_tries: int = 50,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"PixProViewsd takes one image key, got {list(self.keys)}")
        _positive_sizes("view_size", list(view_size) if isinstance(view_size, (list, tuple)) else view_size, True)
        if not isinstance(view_size, (list, tuple)) or len(view_size) not in (2, 3):
            raise ValueError(f"view_size must list 2 or 3 sides, got {view_size!r}")
        if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale!r}")
        if isinstance(min_overlap, bool) or not isinstance(min_overlap, (int, float)) or not 0 <= min_overlap < 1:
            raise ValueError(f"min_overlap must be in [0, 1), got {min_overlap!r}")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed must be None or a whole number >= 0, got {seed!r}")
        self.view_size = tuple(int(v) for v in view_size)
        self.scale, self.min_overlap, self.intensity = (float(scale[0]), float(scale[1])), float(min_overlap), bool(intensity)
        self.coords_key, self.seed, self.max_tries = coords_key, None if seed is None else int(seed), int(max_tries)

    def randomize(self, data: Any = None) -> None:  # every draw happens in __call__, from self.R
        return None

    def _box(self, shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
        fraction = self.R.uniform(*self.scale) ** (1.0 / len(shape))
        sides = [max(1, min(n, round(n * fraction))) for n in shape]
        starts = [int(self.R.randint(0, n - s + 1)) for n, s in zip(shape, sides)]
        return starts, sides

    @staticmethod
    def _overlap(a: tuple[list[int], list[int]], b: tuple[list[int], list[int]]) -> float:
        inter = 1.0
        for s1, n1, s2, n2 in zip(a[0], a[1], b[0], b[1]):
            inter *= max(0, min(s1 + n1, s2 + n2) - max(s1, s2))
        return inter / min(float(np.prod(a[1])), float(np.prod(b[1])))

    def _view(self, image: torch.Tensor, box: tuple[list[int], list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        starts, sides = box
        region = image[(slice(None), *(slice(s, s + n) for s, n in zip(starts, sides)))]
        mode = "bilinear" if len(sides) == 2 else "trilinear"
        view = torch.nn.functional.interpolate(region[None], size=self.view_size, mode=mode, align_corners=False)[0]
        axes = [s + (torch.arange(v, dtype=torch.float32) + 0.5) * n / v - 0.5 for s, n, v in zip(starts, sides, self.view_size)]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))
        for axis in range(1, len(sides) + 1):
            if self.R.rand() < 0.5:
                view, coords = view.flip(axis), coords.flip(axis)
        if self.view_size[-1] == self.view_size[-2]:
            k = int(self.R.randint(0, 4))
            view, coords = torch.rot90(view, k, dims=(-2, -1)), torch.rot90(coords, k, dims=(-2, -1))
        if self.intensity:
            view = view * self.R.uniform(0.8, 1.25) + self.R.uniform(-0.2, 0.2)
            sigma = self.R.uniform(0.0, 1.0)
            if sigma > 0.25:
                view = torch.as_tensor(GaussianSmooth(sigma=sigma)(view)).float()
            view = view + torch.as_tensor(self.R.normal(0.0, self.R.uniform(0.0, 0.1), size=tuple(view.shape)), dtype=view.dtype)
        return view.contiguous(), coords.contiguous()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        key = self.keys[0]
        image = torch.as_tensor(d[key], dtype=torch.float32).detach()
        if image.ndim - 1 != len(self.view_size):
            raise ValueError(f"PixProViewsd: a {len(self.view_size)}D view_size for an image of shape {tuple(image.shape)} (channel first)")
        if self.seed is not None:
            self.set_random_state(self.seed)
        shape = tuple(image.shape[1:])
        for _ in range(self.max_tries):
            a, b = self._box(shape), self._box(shape)
            if self._overlap(a, b) >= self.min_overlap:
                break
        (v1, c1), (v2, c2) = self._view(image, a), self._view(image, b)
        d[key] = torch.cat([v1, v2])
        d[self.coords_key] = torch.cat([c1, c2])
        return d
