"""Training targets from instance labels: thick boundaries, foreground and U-Net weight maps.

* ``boundary``: voxels where the instance id changes (``skimage.segmentation.find_boundaries``,
  ``mode="thick"``, full connectivity: 8 in 2D, 26 in 3D), so both sides of a contact between
  two cells are boundary.
* ``weight``: the U-Net weight map (Ronneberger et al. 2015)
  ``w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))``, with ``d1``, ``d2`` the distances (in
  physical units, ``spacing``) to the nearest and second-nearest instance and ``w_c`` the
  class-balance weight of the voxel's boundary class (inverse class frequency, scaled so that
  it averages 1 over the volume). Inside instance ``i``, ``d1 = 0``; so voxels near a contact
  between two instances (on either side) get the extra weight, isolated objects' borders do not.
  The distances are exact anisotropic Euclidean distances from the ``edt`` package, computed per
  instance within its bounding box grown by ``3 sigma`` (beyond that the term is < 1e-4 w0).

Example:
    >>> lab = np.zeros((1, 32, 32), np.int64); lab[0, 4:28, 4:15] = 1; lab[0, 4:28, 16:28] = 2
    >>> out = InstanceTargetsd("label")({"label": lab})
    >>> out["boundary"].shape, out["weight"].shape, float(out["weight"][0, 16, 15]) > float(out["weight"][0, 16, 2])
    ((1, 32, 32), (1, 32, 32), True)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import edt
import numpy as np
from monai.transforms import MapTransform
from scipy import ndimage
from skimage.segmentation import find_boundaries

from cseg_monai.common.checks import check_instance_ids, check_spacing

__all__ = ["InstanceTargetsd", "boundary_target", "class_balance_weights", "unet_weight_map"]


def _labels(labels: Any, name: str = "labels") -> np.ndarray:
    return check_instance_ids(labels, name)


def boundary_target(labels: np.ndarray, in_plane: bool = False) -> np.ndarray:
    """Thick boundaries (uint8 0/1) of an instance label image, full connectivity.

    With ``in_plane`` (3D labels only), boundaries are found in each z plane (8-connectivity);
    across planes, only a contact between two *different objects* is boundary, not the top or
    bottom face of an object against the background. For strongly anisotropic stacks with few
    planes (e.g. 5 planes of 1 um under 0.2 um pixels), where the 3D thick boundary would
    cover an object's whole top and bottom planes and the rim of every plane in between.

    Example:
        >>> boundary_target(np.array([[1, 1, 2, 2]])).tolist()
        [[0, 1, 1, 0]]
        >>> lab = np.zeros((3, 1, 4), np.int64); lab[:2, 0, :2] = 1; lab[2, 0, :2] = 2
        >>> boundary_target(lab, in_plane=True)[:, 0].tolist()
        [[0, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0]]
    """
    lab = _labels(labels)
    if not in_plane:
        return find_boundaries(lab, connectivity=lab.ndim, mode="thick").astype(np.uint8)
    if lab.ndim != 3:
        raise ValueError(f"in_plane boundaries need 3D (Z, Y, X) labels, got shape {lab.shape}")
    out = np.stack([find_boundaries(plane, connectivity=2, mode="thick") for plane in lab])
    contact = (lab[1:] != lab[:-1]) & (lab[1:] > 0) & (lab[:-1] > 0)  # object-object contact across planes
    out[1:] |= contact
    out[:-1] |= contact
    return out.astype(np.uint8)


def class_balance_weights(target: np.ndarray) -> np.ndarray:
    """Per-voxel inverse frequency of the voxel's class in a 0/1 ``target``, averaging 1.

    Example:
        >>> class_balance_weights(np.array([0, 0, 0, 1])).tolist()
        [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]
    """
    t = np.asarray(target).astype(bool)
    n = t.size
    n_pos = int(t.sum())
    if n_pos in (0, n):
        return np.ones(t.shape, np.float64)
    w_pos, w_neg = n / (2.0 * n_pos), n / (2.0 * (n - n_pos))
    return np.where(t, w_pos, w_neg)


def unet_weight_map(
    labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    spacing: Sequence[float] | None = None,
    class_balance: bool = True,
    target: np.ndarray | None = None,
) -> np.ndarray:
    """U-Net weight map ``w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` (float32, shape of ``labels``).

    Args:
        labels: instance ids ``([Z,] Y, X)``, 0 = background.
        w0: weight of the contact term.
        sigma: its width, in the units of ``spacing`` (voxels by default).
        spacing: physical voxel size per axis.
        class_balance: add the class-balance weight of ``target`` (default: the boundaries of
            ``labels``); otherwise ``w_c = 1``.
        target: the 0/1 training target the class balance refers to.
    """
    lab = _labels(labels)
    if not (math.isfinite(w0) and w0 >= 0 and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"w0 must be >= 0 and sigma > 0, got w0={w0}, sigma={sigma}")
    sp = [1.0] * lab.ndim if spacing is None else check_spacing(spacing, lab.ndim, "spacing", max_anisotropy=None)
    d1 = np.full(lab.shape, np.inf, np.float32)
    d2 = np.full(lab.shape, np.inf, np.float32)
    if w0 > 0:
        reach = [int(math.ceil(3 * sigma / s)) + 1 for s in sp]

        boxes = ndimage.find_objects(lab)
        for index, box in enumerate(boxes, start=1):
            if box is None:
                continue
            grown = tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(box, reach, lab.shape))
            outside = lab[grown] != index  # distance from every voxel of the window to instance `index`
            dist = edt.edt(np.ascontiguousarray(outside), anisotropy=tuple(sp), black_border=False).astype(np.float32)
            a, b = d1[grown], d2[grown]
            d2[grown] = np.where(dist < a, a, np.minimum(b, dist))
            d1[grown] = np.minimum(a, dist)
    with np.errstate(invalid="ignore", over="ignore"):
        term = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    term = np.nan_to_num(term, nan=0.0, posinf=0.0)
    base = class_balance_weights(boundary_target(lab) if target is None else target) if class_balance else 1.0
    return (base + term).astype(np.float32)


class InstanceTargetsd(MapTransform):
    """Add ``boundary`` (and ``foreground``) targets and a ``weight`` map computed from instance labels.

    Input ``data[key]``: instance ids ``(1, [Z,] Y, X)`` or ``([Z,] Y, X)``. Outputs (channel
    first, float32): ``boundary_key`` (thick boundaries), ``foreground_key`` (ids > 0, when
    not None) and ``weight_key`` (:func:`unet_weight_map` for the boundary target). The
    transform is deterministic, so MONAI's ``CacheDataset`` / ``PersistentDataset`` cache it.

    Args:
        keys: the instance label key (one).
        boundary_key, foreground_key, weight_key: output keys (``foreground_key=None`` skips it).
        w0, sigma, spacing, class_balance: of :func:`unet_weight_map` (``sigma`` in the units
            of the spacing).
        spacing_key: where an item may carry its own spacing (e.g. :class:`LoadInstancesd`'s
            ``spacing``); it wins over ``spacing`` when present and not None.
        in_plane: in-plane boundaries for 3D labels (:func:`boundary_target`); ignored for 2D.
        in_plane_below: in-plane boundaries also for any 3D label volume of fewer planes than
            this (a thin stack cuts its objects with its faces, and a 3D boundary would cover
            most of a nucleus three planes thick); None: only ``in_plane`` decides.
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        boundary_key: str = "boundary",
        foreground_key: str | None = None,
        weight_key: str = "weight",
        w0: float = 10.0,
        sigma: float = 5.0,
        spacing: Sequence[float] | None = None,
        class_balance: bool = True,
        spacing_key: str | None = "spacing",
        in_plane: bool = False,
        in_plane_below: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.in_plane = bool(in_plane)
        if in_plane_below is not None and (int(in_plane_below) != in_plane_below or in_plane_below < 1):
            raise ValueError(f"in_plane_below must be a whole number of planes >= 1 or None, got {in_plane_below!r}")
        self.in_plane_below = None if in_plane_below is None else int(in_plane_below)
        if len(self.keys) != 1:
            raise ValueError(f"InstanceTargetsd takes one label key, got {list(self.keys)}")
        self.boundary_key, self.foreground_key, self.weight_key = boundary_key, foreground_key, weight_key
        self.w0, self.sigma, self.spacing, self.class_balance = float(w0), float(sigma), spacing, bool(class_balance)
        self.spacing_key = spacing_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            lab = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            if lab.ndim in (3, 4) and lab.shape[0] == 1:
                lab = lab[0]
            if np.issubdtype(lab.dtype, np.floating):
                if not np.all(lab == np.round(lab)):
                    raise ValueError(f"{key}: instance labels must be integers, got non-integer values")
                lab = lab.astype(np.int64)
            lab = _labels(lab, name=str(key))
            thin = self.in_plane_below is not None and lab.ndim == 3 and lab.shape[0] < self.in_plane_below
            boundary = boundary_target(lab, in_plane=(self.in_plane or thin) and lab.ndim == 3)
            d[self.boundary_key] = boundary[None].astype(np.float32)
            if self.foreground_key is not None:
                d[self.foreground_key] = (lab > 0)[None].astype(np.float32)
            spacing = d.get(self.spacing_key) if self.spacing_key is not None else None
            spacing = self.spacing if spacing is None else spacing
            weight = unet_weight_map(lab, self.w0, self.sigma, spacing, self.class_balance, target=boundary)
            d[self.weight_key] = weight[None]
        return d
