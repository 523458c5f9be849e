"""Unlabelled image pools for self-supervised pretraining, never the validation or test parts of a labelled set.

Pools (:data:`POOLS`), each 2D or 3D:

* ``epfl_train`` (2D): the EPFL CA1 FIB-SEM slices of the organelle bundle's training split
  (indices 0-19 of ``epfl_ca1_multiclass/epfl_train/slices``); its validation (20-21) and test
  slices (22-26) are left out.
* ``isbi_test`` (2D): the 30 ISBI 2012 test slices (``isbi2012/test/image``), which have no labels.
* ``plantseg_nuclei``, ``plantseg_ovule``, ``ctc_cho``, ``gala`` (3D): the raw volumes of the
  training parts of the instance sets (:data:`cseg_monai.data.datasets.instances.SPLITS`).
* ``folder`` (2D or 3D): every image the readers open in ``root`` (a user's own data).

Items carry ``image`` (the path, for messages), ``pool``, ``spatial_dims`` and, for the
instance sets, ``instance_item`` (what :func:`cseg_monai.data.datasets.instances.load_item` reads).

:func:`datalist` lists items, :func:`load_pool_item` reads one as a ``(1, *spatial)`` float32
array scaled robustly to [0, 1] (the 1st and 99.5th percentiles go to 0 and 1, then clipped), so
8-bit, 16-bit and float images reach a network alike.

Example:
    >>> from cseg_monai.data.phantom import write_organelle_dataset
    >>> import tempfile
    >>> root = write_organelle_dataset(tempfile.mkdtemp(), n_slices=2, shape=(64, 64))
    >>> items = datalist("folder", root + "/images", spatial_dims=2)
    >>> load_pool_item(items[0]).shape
    (1, 64, 64)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import ScaleIntensityRangePercentiles

from cseg_monai.data.datasets import epfl_ca1, instances, isbi2012, organelles
from cseg_monai.data.readers import list_images, load_image

__all__ = ["POOLS", "POOL_DIMS", "SCALINGS", "datalist", "load_pool_item", "robust_scale"]

#: Intensity scalings of :func:`load_pool_item`.
SCALINGS = ("robust", "organelle")

#: Spatial dimensions of each named pool (``folder`` takes what the files hold).
POOL_DIMS = {"epfl_train": 2, "isbi_test": 2, "plantseg_nuclei": 3, "plantseg_ovule": 3, "ctc_cho": 3, "gala": 3, "folder": None}
POOLS = tuple(POOL_DIMS)
#: The organelle bundle's training slices: the only EPFL slices a pretraining may see.
EPFL_TRAIN_INDICES = tuple(range(20))
#: Where each named pool lives under the shared data folder.
_ROOTS = {"epfl_train": "epfl_ca1_multiclass", "isbi_test": "isbi2012"}


def robust_scale(image: np.ndarray, source: str = "<image>", lower: float = 1.0, upper: float = 99.5) -> np.ndarray:
    """``image`` as float32 with its ``lower`` / ``upper`` percentiles at 0 / 1, clipped to [0, 1]
    (MONAI's ``ScaleIntensityRangePercentiles``, after checks that name ``source``).

    Raises:
        ValueError: empty, NaN or infinite (``source`` named); a constant image scales to zeros.

    Example:
        >>> [round(float(v), 2) for v in robust_scale(np.arange(1000, dtype=np.uint16))[[0, 500, 999]]]
        [0.0, 0.5, 1.0]
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.size == 0:
        raise ValueError(f"{source}: empty image")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{source}: image holds NaN or infinite values")
    lo, hi = np.percentile(arr, [lower, upper])
    if hi <= lo:
        return np.zeros_like(arr)
    scaled = ScaleIntensityRangePercentiles(lower, upper, b_min=0.0, b_max=1.0, clip=True, dtype=np.float32)(arr)
    return np.asarray(scaled, dtype=np.float32)


def datalist(pool: str, root: str | os.PathLike, spatial_dims: int | None = None) -> list[dict[str, Any]]:
    """Items ``{"image", "pool", "spatial_dims"[, "instance_item"]}`` of ``pool``.

    Args:
        pool: one of :data:`POOLS`.
        root: the shared data folder (``cseg_monai.common.data_root()``), or for ``folder`` the
            folder of images.
        spatial_dims: 2 or 3, checked against a named pool (None: the pool's own).

    Raises:
        ValueError: unknown pool, a 2D pool asked for 3D or the reverse, a folder with no image.
        FileNotFoundError: the data are missing (the path is named).
    """
    if pool not in POOL_DIMS:
        raise ValueError(f"unknown pool {pool!r}; known: {list(POOLS)}")
    if spatial_dims not in (None, 2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    dims = POOL_DIMS[pool]
    if dims is not None and spatial_dims is not None and dims != spatial_dims:
        raise ValueError(f"pool {pool!r} holds {dims}D images, not {spatial_dims}D")
    dims = dims or spatial_dims
    root = Path(root).expanduser()
    if pool == "folder":
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: the folder of unlabelled images does not exist")
        files = list_images(root)  # raises, naming the folder, when it holds no image
        return [{"image": str(f.resolve()), "pool": pool, "spatial_dims": dims} for f in files]
    if pool == "epfl_train":
        items = epfl_ca1.datalist(root / _ROOTS[pool], EPFL_TRAIN_INDICES)
        return [{"image": item["image"], "pool": pool, "spatial_dims": 2} for item in items]
    if pool == "isbi_test":
        items = isbi2012.datalist(root / _ROOTS[pool], split="test", with_labels=False)
        return [{"image": item["image"], "pool": pool, "spatial_dims": 2} for item in items]
    items = instances.datalist(pool, root, "train")
    return [{"image": item["image"], "pool": pool, "spatial_dims": 3, "instance_item": item} for item in items]


def load_pool_item(item: dict[str, Any], scaling: str = "robust") -> np.ndarray:
    """One pool item as a ``(1, *spatial)`` float32 array in [0, 1].

    Args:
        item: from :func:`datalist`.
        scaling: ``"robust"`` (:func:`robust_scale`, percentiles 1 / 99.5) or ``"organelle"``
            (uint8 / 255, other dtypes min-max: the organelle bundle's
            :func:`~cseg_monai.data.datasets.organelles.scale_image`, so a backbone pretrained
            for it sees its intensities).

    Raises:
        ValueError: the file does not have the item's ``spatial_dims`` (a 2-channel image, a
            stack where a plane was expected), empty or non-finite; the file is named.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {list(SCALINGS)}, got {scaling!r}")
    source = str(item.get("image"))
    if "instance_item" in item:  # the training part of an instance set (its crop, its time points)
        image = np.asarray(instances.load_item(item["instance_item"])[0])
    else:
        image, _ = load_image(source)
        image = np.asarray(image)
    dims = item.get("spatial_dims")
    image = np.squeeze(image) if dims is not None and image.ndim > dims else image
    if dims is not None and image.ndim != dims:
        raise ValueError(f"{source}: expected a {dims}D grey image, got shape {image.shape}")
    if image.ndim not in (2, 3):
        raise ValueError(f"{source}: expected a 2D or 3D grey image, got shape {image.shape}")
    return (robust_scale(image, source) if scaling == "robust" else organelles.scale_image(image, source))[None]

