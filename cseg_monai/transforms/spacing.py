"""The voxel size a model was trained at, as part of the model: rescale in, rescale back out.

A network trained on nuclei of 0.28 x 0.13 x 0.13 um sees a volume of 1.0 x 0.2 x 0.2 um voxels
as squashed, smaller nuclei and fails on it. :class:`RescaleToSpacingd` resamples each input
to the model's voxel size (``model_spacing``, Z, Y, X), anisotropy included, and
:class:`RescaleToInputd` resamples the outputs (probabilities linearly, instance ids by
nearest neighbour) back to the input's own grid, so every output has the input's shape.

The input's voxel size comes from, in this order: ``spacing`` given by the user (``--spacing``,
the GUI), the file (``meta["spacing"]``, which the readers set only when the file states it),
the configuration's ``default_spacing`` (what a model assumes of files that state none, e.g.
the CTC model of its challenge's 1 x 0.202 x 0.202 um), or nowhere, in which case the input is
left as it is. Which one was used is written into the meta data (``spacing_source``:
``"user"``, ``"file"``, ``"default"`` or ``"unknown"``) and logged.

Objects of one kind differ in physical size (plant nuclei of 3 um, hamster nuclei of 12 um), so a
generalist model also records ``object_size``: the mean in-plane object chord, in voxels, of its
training images (:func:`~cseg_monai.transforms.object_size.estimate_object_size`). With it, the
input's own objects are measured after the voxel-size step and the volume is zoomed once more,
by ``object_size / measured``: on every axis when the voxel size is known (the anisotropy stays
the model's), in-plane only when it is not (z is then left as the file has it, since the stack's
z sampling cannot be told from the image). The meta data records ``object_size_source``
(``"estimated"`` or ``"off"``), the measured chord and the zoom.

Example:
    >>> import torch
    >>> from monai.data import MetaTensor
    >>> img = MetaTensor(torch.rand(1, 5, 40, 40), meta={"spacing": [1.0, 0.2, 0.2], "filename_or_obj": "v.tif"})
    >>> d = RescaleToSpacingd("image", model_spacing=[0.5, 0.1, 0.1])({"image": img})
    >>> tuple(d["image"].shape), d["image"].meta["spacing_source"]
    ((1, 10, 80, 80), 'file')
    >>> back = RescaleToInputd("image", reference_key="image")(d)
    >>> tuple(back["image"].shape)
    (1, 5, 40, 40)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import MapTransform

from cseg_monai.common.checks import check_spacing
from cseg_monai.transforms.object_size import estimate_object_size

__all__ = ["RescalePlan", "RescaleToInputd", "RescaleToSpacingd", "SPACING_SOURCES"]

#: Where an input's voxel size came from.
SPACING_SOURCES = ("user", "file", "default", "unknown")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RescalePlan:
    """How :class:`RescaleToSpacingd` rescales one input (:meth:`RescaleToSpacingd.plan`).

    Attributes:
        zoom: the scale factor per spatial axis (1.0 where left alone).
        new_shape: the spatial shape in the model's grid.
        spacing: the input's voxel size, or ``None`` when unknown.
        source: where it came from (:data:`SPACING_SOURCES`).
        grid: the voxel size of the model's grid (relative, in-plane voxels = 1, for a model with
            ``object_size``), or ``None`` when the input's is unknown.
        meta: what the meta data records (``spacing_source``, ``object_size_source`` and, when
            objects were measured, ``object_chord`` and ``object_zoom``).
    """

    zoom: list[float]
    new_shape: list[int]
    spacing: list[float] | None
    source: str
    grid: list[float] | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rescales(self) -> bool:
        """Whether the model's grid differs from the input's."""
        return any(z != 1.0 for z in self.zoom)


def _name(meta: Mapping) -> str:
    return str(meta.get("filename_or_obj") or "the input")


def _resample(x: torch.Tensor, shape: Sequence[int], mode: str) -> torch.Tensor:
    """Channel-first ``x`` resampled to spatial ``shape`` (``"linear"`` or ``"nearest"``), dtype kept."""
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    dims = x.ndim - 1
    inp = x.as_tensor() if isinstance(x, MetaTensor) else x
    if mode == "nearest":
        out = F.interpolate(inp[None].float(), size=tuple(shape), mode="nearest-exact")[0]
        return out.to(inp.dtype)
    linear = {1: "linear", 2: "bilinear", 3: "trilinear"}[dims]
    return F.interpolate(inp[None].float(), size=tuple(shape), mode=linear, align_corners=False)[0].to(inp.dtype)


class RescaleToSpacingd(MapTransform):
    """Resample channel-first images to the voxel size the model was trained at.

    Args:
        keys: image keys (channel first ``(C, [Z,] Y, X)`` MetaTensors from ``LoadImaged``).
        model_spacing: the model's voxel size per spatial axis (None: no rescaling at all).
        spacing: the input's voxel size when the user gives it (wins over the file's).
        default_spacing: the voxel size assumed for a file that states none.
        tolerance: leave an axis alone when its scale factor is within ``1 +- tolerance``
            (resampling by a few percent only blurs).
        object_size: the model's mean in-plane object chord in voxels (None: objects are not
            measured, only the voxel size counts).
        object_diameter: the input's typical object diameter in its own in-plane voxels, when
            the user knows it (as Cellpose's ``diameter``); replaces the estimate. It is taken
            as a ball's (mean chord ``2/3`` of it), or a disc's in a single plane (``pi/4``).
            Needs ``object_size``.
        max_object_zoom: the in-plane zoom (voxel size and objects together) is clipped to
            ``[1 / max, max]``.
        nearest_keys: keys resampled by nearest neighbour to the first key's new grid (labels,
            when training data goes through the same rescaling as inference).
        zoom_key: an optional item key holding one more zoom factor for every axis (a
            training-time scale augmentation that is cached with the item).
        allow_missing_keys: do not raise for an absent key.

    The meta data gets ``spacing_source``, ``input_shape`` (for :class:`RescaleToInputd`),
    ``input_spacing`` (when known), ``spacing``: the grid's voxel size after this transform
    (absent when unknown), ``object_size_source`` and, when objects were measured,
    ``object_chord`` (input voxels) and ``object_zoom`` (the in-plane zoom). With ``object_size`` the grid's
    ``spacing`` is relative, in the model frame's in-plane voxels (e.g. ``[2.24, 1, 1]``), so
    post-processing settings in voxels mean the same for every input.

    Raises:
        ValueError: a voxel size that is not finite and positive, of the wrong length, or more
            anisotropic than :data:`~cseg_monai.common.checks.MAX_ANISOTROPY`, naming its source;
            an image whose objects cannot be measured (constant), naming the file.
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        model_spacing: Sequence[float] | None,
        spacing: Sequence[float] | None = None,
        default_spacing: Sequence[float] | None = None,
        tolerance: float = 0.1,
        object_size: float | None = None,
        object_diameter: float | None = None,
        max_object_zoom: float = 8.0,
        nearest_keys: Sequence[str] = (),
        zoom_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if object_size is not None and not (np.isfinite(float(object_size)) and float(object_size) > 0):
            raise ValueError(f"object_size must be a finite number of voxels > 0, got {object_size!r}")
        if not (np.isfinite(float(max_object_zoom)) and float(max_object_zoom) >= 1.0):
            raise ValueError(f"max_object_zoom must be >= 1, got {max_object_zoom!r}")
        if object_diameter is not None:
            if isinstance(object_diameter, bool) or not isinstance(object_diameter, (int, float, np.number)) or not (
                np.isfinite(float(object_diameter)) and float(object_diameter) > 0
            ):
                raise ValueError(f"object_diameter must be a finite number of voxels > 0 (or None: measure the objects), got {object_diameter!r}")
            if object_size is None:
                raise ValueError("object_diameter needs a model that knows its object size (object_size); this one rescales by voxel size only")
        self.object_diameter = None if object_diameter is None else float(object_diameter)
        self.object_size = None if object_size is None else float(object_size)
        self.max_object_zoom = float(max_object_zoom)
        self.nearest_keys = [nearest_keys] if isinstance(nearest_keys, str) else list(nearest_keys)
        self.zoom_key = zoom_key
        self.model_spacing = None if model_spacing is None else check_spacing(model_spacing, len(model_spacing), "model_spacing")
        self.spacing = None if spacing is None else check_spacing(spacing, len(spacing), "--spacing")
        self.default_spacing = None if default_spacing is None else check_spacing(default_spacing, len(default_spacing), "default_spacing")
        if not 0.0 <= float(tolerance) < 1.0:
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
        self.tolerance = float(tolerance)

    def plan(
        self,
        shape: Sequence[int],
        file_spacing: Sequence[float] | None = None,
        image: np.ndarray | Callable[[], np.ndarray] | None = None,
        name: str = "the input",
        extra_zoom: float | None = None,
    ) -> RescalePlan:
        """How an input of spatial ``shape`` is rescaled, without touching its voxels.

        :meth:`__call__` applies this plan; out-of-core inference uses it to rescale a volume
        that never fits in memory block by block.

        Args:
            shape: the input's spatial shape.
            file_spacing: the voxel size the file states (``None`` when it states none).
            image: the input's first channel, or a callable returning it (for example a central
                crop of a large volume), read only when objects are measured.
            name: how messages name the input.
            extra_zoom: one more zoom factor for every axis (the ``zoom_key`` item).

        Returns:
            A :class:`RescalePlan`.

        Example:
            >>> t = RescaleToSpacingd("image", model_spacing=[0.5, 0.1, 0.1])
            >>> p = t.plan((5, 40, 40), file_spacing=[1.0, 0.2, 0.2])
            >>> p.new_shape, p.source, p.grid
            ([10, 80, 80], 'file', [0.5, 0.1, 0.1])
        """
        ndim = len(shape)
        shape = tuple(int(s) for s in shape)
        if self.spacing is not None:
            source, spacing = "user", check_spacing(self.spacing, ndim, "--spacing")
        elif file_spacing is not None:
            source, spacing = "file", check_spacing(file_spacing, ndim, f"{name}: its voxel size")
        elif self.default_spacing is not None:
            source, spacing = "default", check_spacing(self.default_spacing, ndim, "default_spacing")
        else:
            source, spacing = "unknown", None
        meta: dict[str, Any] = {"spacing_source": source, "object_size_source": "off"}
        zoom = [1.0] * ndim
        if self.model_spacing is not None and spacing is not None:
            zoom = [s / m for s, m in zip(spacing, check_spacing(self.model_spacing, ndim, "model_spacing"))]
        if self.object_size is not None:
            if self.object_diameter is not None:
                single_plane = ndim == 2 or shape[0] == 1
                chord, object_source = self.object_diameter * (np.pi / 4 if single_plane else 2.0 / 3.0), "user"
            else:
                if image is None:
                    raise ValueError(f"{name}: measuring the objects needs the image (or give object_diameter)")
                pixels = image() if callable(image) else image
                chord, object_source = estimate_object_size(np.asarray(pixels), name=name).chord_yx, "estimated"
            in_plane = float(np.mean(zoom[-2:]))
            total = np.clip(self.object_size / max(chord, 1e-6), 1.0 / self.max_object_zoom, self.max_object_zoom)
            g = float(total / in_plane)  # in-plane, voxel size and objects together: the clipped total
            axes = range(ndim) if spacing is not None else range(max(ndim - 2, 0), ndim)
            zoom = [z * g if a in axes else z for a, z in enumerate(zoom)]
            meta.update(object_size_source=object_source, object_chord=float(chord), object_zoom=float(total))
            logger.info(
                "%s: objects %.1f voxels across (mean in-plane chord, %s), the model's %.1f: in-plane zoom %.2f",
                name, chord, object_source, self.object_size, total,
            )  # fmt: skip
        if extra_zoom is not None:
            zoom = [z * float(extra_zoom) for z in zoom]
        zoom = [1.0 if abs(z - 1.0) <= self.tolerance or n == 1 else z for z, n in zip(zoom, shape)]
        new_shape = [max(1, int(round(n * z))) for n, z in zip(shape, zoom)] if any(z != 1.0 for z in zoom) else list(shape)
        grid = None if spacing is None else list(spacing)
        if spacing is not None and any(z != 1.0 for z in zoom):
            grid = [s * n / m for s, n, m in zip(spacing, shape, new_shape)]
            if self.object_size is not None:  # the model's frame: in-plane voxels are the unit
                grid = [g / grid[-1] for g in grid]
        return RescalePlan(list(zoom), new_shape, None if spacing is None else list(spacing), source, grid, meta)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if not isinstance(img, MetaTensor):
                img = MetaTensor(torch.as_tensor(img))
            meta = dict(img.meta)
            name = _name(meta)
            shape = tuple(int(s) for s in img.shape[1:])
            extra = float(d[self.zoom_key]) if self.zoom_key is not None and d.get(self.zoom_key) is not None else None
            plan = self.plan(shape, meta.get("spacing"), lambda img=img: np.asarray(img[0].detach().cpu()), name, extra)
            meta.update(plan.meta, input_shape=np.asarray(shape))
            if plan.spacing is not None:
                meta["input_spacing"] = np.asarray(plan.spacing)
                meta["spacing"] = np.asarray(plan.spacing)
            out = img
            if plan.rescales:
                new_shape = plan.new_shape
                out = _resample(img, new_shape, "linear")
                logger.info("%s: voxel size %s (%s): %s -> %s", name, plan.spacing, plan.source, shape, tuple(new_shape))
                if plan.grid is not None:
                    meta["spacing"] = np.asarray(plan.grid)
                    ndim = len(shape)
                    affine = np.eye(max(ndim, 3) + 1)
                    affine[np.arange(ndim), np.arange(ndim)] = plan.grid
                    meta["affine"] = torch.as_tensor(affine)
                for other in self.nearest_keys:
                    if other in d:
                        lab = d[other]
                        lab_t = lab if isinstance(lab, torch.Tensor) else torch.as_tensor(np.asarray(lab))
                        res = _resample(lab_t, new_shape, "nearest")
                        d[other] = MetaTensor(res.as_tensor() if isinstance(res, MetaTensor) else res, meta=dict(getattr(lab, "meta", {})))
            else:
                logger.info("%s: voxel size %s: not rescaled", name, "unknown" if plan.spacing is None else f"{plan.spacing} ({plan.source})")
            d[key] = MetaTensor(out.as_tensor() if isinstance(out, MetaTensor) else out, meta=meta)
        return d


class RescaleToInputd(MapTransform):
    """Resample outputs back to the input's grid recorded by :class:`RescaleToSpacingd`.

    Args:
        keys: output keys, channel first.
        reference_key: the key whose meta holds ``input_shape`` (the prediction, which carries
            the image's meta through the network, or the image itself).
        modes: per key ``"linear"`` (probabilities) or ``"nearest"`` (instance ids, labels).
        allow_missing_keys: do not raise for an absent key.
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        reference_key: str = "pred",
        modes: str | Sequence[str] = "linear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference_key = reference_key
        self.modes = [modes] * len(self.keys) if isinstance(modes, str) else list(modes)
        if len(self.modes) != len(self.keys) or any(m not in ("linear", "nearest") for m in self.modes):
            raise ValueError(f"modes must be 'linear' or 'nearest', one per key {list(self.keys)}, got {modes!r}")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref = d.get(self.reference_key)
        meta = dict(ref.meta) if isinstance(ref, MetaTensor) else {}
        shape = meta.get("input_shape")
        if shape is None:
            return d  # never rescaled
        shape = [int(s) for s in (shape.tolist() if hasattr(shape, "tolist") else shape)]
        spacing = meta.get("input_spacing")
        for key, mode in zip(self.key_iterator(d), self.modes):
            x = d[key]
            out = _resample(x if isinstance(x, torch.Tensor) else torch.as_tensor(x), shape, mode)
            key_meta = dict(x.meta) if isinstance(x, MetaTensor) else dict(meta)
            if spacing is not None:
                key_meta["spacing"] = np.asarray(spacing, dtype=np.float64).reshape(-1)
            d[key] = MetaTensor(out.as_tensor() if isinstance(out, MetaTensor) else out, meta=key_meta)
        return d
