"""Instance segmentation data sets of ``../shared/data``: one loader, their quirks, held-in splits.

Every loader returns ``(image (1, Z, Y, X) in the file's dtype, labels (Z, Y, X) int64, spacing
(z, y, x) in micrometres or None)``; ``labels`` keeps the file's ids (0 = background, never an
object). What each ``kind`` assumes:

* ``plantseg_ovule`` (``plantseg/sample_ovule.h5``): confocal Arabidopsis ovule, dense
  **cell** instances (``label``, uint16 ids, not consecutive), ``raw`` uint8; spacing from the
  ``element_size_um`` attribute (0.235, 0.15, 0.15).
* ``plantseg_nuclei`` (``plantseg/nuclei_1135_mini.h5``): 100^3 **nuclei**, ids 1..54, spacing
  from ``element_size_um``.
* ``ctc_cho`` (``ctc_fluo_n3dh_cho/image_TZYX.tif`` + ``labels_TZYX.tif``): Cell Tracking
  Challenge Fluo-N3DH-CHO, 15 time points of 5 x 443 x 512 (**only 5 planes**); each item is
  one time point. The files hold no spacing; the challenge describes this set as 0.202 x 0.202
  x 1.0 um, used here. The labels are the challenge's computer-generated reference.
* ``gala`` (``gala_fibsem/train-image.h5`` + ``train-gt.lzf.h5``, dataset ``stack``): isotropic
  FIB-SEM with dense neuron ids 1..87; **0 marks boundaries/unassigned voxels**, not a
  background region.
* ``dsb_nuclei`` (``dsb2018_nuclei_2d/img2d.tif`` + ``mask2d.tif``): one 512 x 512 uint16
  fluorescence image of the 2018 Data Science Bowl, 125 nucleus ids (not consecutive), read as
  a single-plane volume; no spacing. Split by rows (train y 0-383, validation y 384-511).
* ``nuclei_phantoms``: synthetic nuclei drawn over wide ranges of size, anisotropy, density,
  blur, noise, background and dtype (:func:`~cseg_monai.data.nuclei_phantom.draw_nuclei_phantom`),
  made from the item's seed, no file (train seeds 0-23, validation 1000-1003).
* ``folder``: ``DATASET_DIR/images/STEM.*`` and ``DATASET_DIR/labels/STEM.tif`` (any reader of
  :mod:`cseg_monai.data.readers`), spacing None.

Held-in splits (:data:`SPLITS`): single volumes are cut along z (first part train, the rest
validation), CTC by time point, DSB by rows. ``kind`` may also be a list of kinds (their
union, as a generalist model trains on), and :func:`with_scales` repeats items at several
zooms (a scale augmentation cached with the item). Example:

    >>> SPLITS["plantseg_nuclei"]["val"]
    {'z': (70, 100)}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tifffile

from cseg_monai.data.nuclei_phantom import draw_nuclei_phantom
from cseg_monai.data.readers import list_images, load_image
from cseg_monai.data.writers import output_stem

__all__ = ["CELL_KINDS", "CTC_SPACING", "KINDS", "NUCLEI_KINDS", "SPLITS", "datalist", "load_item", "repeat_kinds", "with_scales"]

KINDS = ("plantseg_ovule", "plantseg_nuclei", "ctc_cho", "gala", "dsb_nuclei", "nuclei_phantoms", "folder")
#: The nuclei sets of ``../shared/data`` (a generalist nuclei model trains on all of them).
NUCLEI_KINDS = ("plantseg_nuclei", "ctc_cho", "dsb_nuclei")
#: The dense cell sets (membrane signal: confocal ovule cells, FIB-SEM neurons); the cells model trains on both.
CELL_KINDS = ("plantseg_ovule", "gala")
CTC_SPACING = (1.0, 0.202, 0.202)
_FILES = {
    "plantseg_ovule": ("plantseg/sample_ovule.h5::raw", "plantseg/sample_ovule.h5::label"),
    "plantseg_nuclei": ("plantseg/nuclei_1135_mini.h5::raw", "plantseg/nuclei_1135_mini.h5::label"),
    "ctc_cho": ("ctc_fluo_n3dh_cho/image_TZYX.tif", "ctc_fluo_n3dh_cho/labels_TZYX.tif"),
    "gala": ("gala_fibsem/train-image.h5::stack", "gala_fibsem/train-gt.lzf.h5::stack"),
    "dsb_nuclei": ("dsb2018_nuclei_2d/img2d.tif", "dsb2018_nuclei_2d/mask2d.tif"),
}
SPLITS: dict[str, dict[str, dict[str, Any]]] = {
    "plantseg_ovule": {"train": {"z": (0, 24)}, "val": {"z": (24, 32)}},
    "plantseg_nuclei": {"train": {"z": (0, 70)}, "val": {"z": (70, 100)}},
    "ctc_cho": {"train": {"t": tuple(range(0, 12))}, "val": {"t": (12, 13, 14)}},
    "gala": {"train": {"z": (0, 38)}, "val": {"z": (38, 50)}},
    "dsb_nuclei": {"train": {"y": (0, 384)}, "val": {"y": (384, 512)}},
    "nuclei_phantoms": {"train": {"seed": tuple(range(24))}, "val": {"seed": (1000, 1001, 1002, 1003)}},
}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown instance data set kind {kind!r}; known: {', '.join(KINDS)}")


def with_scales(items: list[dict[str, Any]], scales: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Each item once per scale, with ``"zoom": scale`` (None or ``[1.0]``: the items unchanged).

    Example:
        >>> [i["zoom"] for i in with_scales([{"kind": "folder"}], [0.7, 1.4])]
        [0.7, 1.4]
    """
    if not scales:
        return list(items)
    bad = [s for s in scales if not (np.isfinite(float(s)) and float(s) > 0)]
    if bad:
        raise ValueError(f"scales must be finite and > 0, got {list(scales)}")
    return [{**item, "zoom": float(s)} for item in items for s in scales]


def repeat_kinds(items: list[dict[str, Any]], repeats: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Items of the kinds in ``repeats`` that many times (balances one big volume against many small ones).

    Example:
        >>> len(repeat_kinds([{"kind": "a"}, {"kind": "b"}], {"a": 3}))
        4
    """
    repeats = dict(repeats or {})
    bad = {k: n for k, n in repeats.items() if int(n) != n or int(n) < 1}
    if bad:
        raise ValueError(f"repeats must be whole numbers >= 1, got {bad}")
    return [item for item in items for _ in range(int(repeats.get(item.get("kind", "folder"), 1)))]


def datalist(kind: str | Sequence[str], root: str | os.PathLike, split: str | None = None) -> list[dict[str, Any]]:
    """Items of ``kind`` under ``root`` (the shared data folder, or DATASET_DIR for ``folder``).

    Args:
        kind: one of :data:`KINDS`, or a list of them (their items one after the other).
        root: ``../shared/data`` (or ``$CSEG_DATA_DIR``), or the folder of a ``folder`` set.
        split: ``"train"``, ``"val"``, or ``"all"`` / None (everything). ``folder`` sets have no split.

    Raises:
        FileNotFoundError: naming the missing file.
    """
    if not isinstance(kind, str):
        kinds = list(kind)
        if not kinds:
            raise ValueError("an empty list of data set kinds")
        return [item for k in kinds for item in datalist(k, root, split)]
    _check_kind(kind)
    root = Path(root)
    if split is not None and split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val', 'all' or None, got {split!r}")
    if kind == "nuclei_phantoms":
        seeds = SPLITS[kind][split]["seed"] if split in ("train", "val") else SPLITS[kind]["train"]["seed"] + SPLITS[kind]["val"]["seed"]
        return [{"kind": kind, "image": f"nuclei_phantom_{s}", "label": f"nuclei_phantom_{s}", "seed": int(s)} for s in seeds]
    if kind == "folder":
        images = root / "images"
        if not images.is_dir():
            raise FileNotFoundError(f"{images} is missing: expected DATASET_DIR/images and DATASET_DIR/labels")
        items = []
        for f in list_images(images):
            label = root / "labels" / f"{output_stem(f)}.tif"
            if not label.is_file():
                raise FileNotFoundError(f"{label} is missing (the labels of {f})")
            items.append({"kind": kind, "image": str(f), "label": str(label)})
        if not items:
            raise FileNotFoundError(f"{images} holds no image")
        return items
    image, label = (str(root / p) for p in _FILES[kind])
    for path in (image, label):
        if not Path(path.split("::")[0]).is_file():
            raise FileNotFoundError(f"{path.split('::')[0]} is missing (instance data set {kind!r})")
    part = SPLITS[kind][split] if split in ("train", "val") else {}
    if kind == "ctc_cho":
        times = part.get("t", tuple(range(15)))
        return [{"kind": kind, "image": image, "label": label, "t": int(t)} for t in times]
    crop = {axis: list(part[axis]) for axis in ("z", "y") if axis in part}
    return [{"kind": kind, "image": image, "label": label, **crop}]


def _read_h5(spec: str) -> tuple[np.ndarray, dict]:
    path, name = spec.split("::")
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                raise KeyError(f"{path}: no dataset {name!r} (has {sorted(f)})")
            return f[name][:], dict(f[name].attrs)
    except OSError as err:
        raise ValueError(f"{path}: cannot read HDF5 ({err})") from None


def load_item(item: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float] | None]:
    """``(image (1, Z, Y, X), labels (Z, Y, X) int64, spacing)`` of a :func:`datalist` item.

    Raises:
        ValueError: image/label shape mismatch, non-integer or negative label ids (file named).
    """
    kind = item.get("kind", "folder")
    _check_kind(kind)
    spacing: tuple[float, float, float] | None = None
    if kind in ("plantseg_ovule", "plantseg_nuclei", "gala"):
        image, attrs = _read_h5(item["image"])
        labels, _ = _read_h5(item["label"])
        if "element_size_um" in attrs:
            spacing = tuple(float(v) for v in attrs["element_size_um"])  # type: ignore[assignment]
    elif kind == "nuclei_phantoms":
        image, labels, spacing = draw_nuclei_phantom(int(item["seed"]))
    elif kind == "dsb_nuclei":
        image, labels = tifffile.imread(item["image"]), tifffile.imread(item["label"])
    elif kind == "ctc_cho":
        t = int(item["t"])
        with tifffile.TiffFile(item["image"]) as tif:
            image = tif.series[0].asarray()[t]
        with tifffile.TiffFile(item["label"]) as tif:
            labels = tif.series[0].asarray()[t]
        spacing = CTC_SPACING
    else:
        image = np.asarray(load_image(item["image"])[0])
        labels = np.asarray(load_image(item["label"])[0])
    if image.shape != labels.shape:
        raise ValueError(f"{item['label']}: label shape {labels.shape} differs from image {item['image']} {image.shape}")
    if image.ndim == 2:
        image, labels = image[None], labels[None]
    if image.ndim != 3:
        raise ValueError(f"{item['image']}: expected a 3D volume (or a 2D image), got shape {image.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{item['label']}: instance labels must be integers, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{item['label']}: negative instance ids")
    if "z" in item:
        z0, z1 = item["z"]
        image, labels = image[z0:z1], labels[z0:z1]
    if "y" in item:
        y0, y1 = item["y"]
        image, labels = image[:, y0:y1], labels[:, y0:y1]
    return image[None], labels.astype(np.int64), spacing
