"""One entry point for every organelle data set: datalists and loading to ``(image, label)``.

The organelle bundle reads one of three layouts, chosen by ``kind``:

* ``"folder"`` (your own data, and the phantom of the demo)::

      DATASET_DIR/images/STEM.(tif|png|h5|nii.gz|...)   2D slice or 3D volume, any reader of
                                                       :mod:`cseg_monai.data.readers`
      DATASET_DIR/labels/STEM.tif                      uint8 class ids, same shape;
                                                       255 = unlabelled (ignored)

  Sparse labels are just ``255`` everywhere except on the labelled planes/pixels.
* ``"epfl_ca1"``: :mod:`cseg_monai.data.datasets.epfl_ca1` (isolated 768 x 1024 slices,
  per-class mask PNGs); ``indices`` are slice positions.
* ``"drosophila_vnc"``: :mod:`cseg_monai.data.datasets.drosophila_vnc` (15 consecutive
  anisotropic sections); the WHOLE stack is the image of one item and ``indices`` are the
  section numbers whose labels this split uses (the other sections are set to 255), so the
  3D context reaches across sections while train and validation labels stay disjoint.

Class ids are :data:`~cseg_monai.data.datasets.epfl_ca1.ORGANELLE_CLASSES` (0 cytoplasm,
1 membrane, 2 mitochondrion, 3 mitochondrion membrane, 4 synapse, 5 vesicle); 255 = ignore.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cseg_monai.common.constants import IGNORE_INDEX, ORGANELLE_CLASSES
from cseg_monai.data.datasets import drosophila_vnc, epfl_ca1
from cseg_monai.data.readers import list_images, load_image

__all__ = ["KINDS", "N_CLASSES", "datalist", "default_split", "load_item", "scale_image"]

KINDS = ("folder", "epfl_ca1", "drosophila_vnc")
N_CLASSES = len(ORGANELLE_CLASSES)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown organelle data set kind {kind!r}; known: {', '.join(KINDS)}")


def _folder_pairs(root: Path) -> list[tuple[Path, Path | None]]:
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{images} is missing: expected DATASET_DIR/images and DATASET_DIR/labels")
    files = list_images(images)
    if not files:
        raise FileNotFoundError(f"{images} holds no image")
    pairs = []
    for f in files:
        stem = f.name.split(".")[0]
        label = root / "labels" / f"{stem}.tif"
        pairs.append((f, label if label.is_file() else None))
    return pairs


def datalist(kind: str, root: str | os.PathLike, indices: Sequence[int] | None = None) -> list[dict]:
    """Items for :func:`load_item` (absolute paths): ``{"image", "label", "kind"}`` for ``folder``;
    ``epfl_ca1`` items carry ``slice_id`` and ``masks`` and ``drosophila_vnc`` items ``sections``
    instead of a label path (the labels are assembled when loading).

    Args:
        kind: one of :data:`KINDS`.
        root: the data set folder.
        indices: ``folder``/``epfl_ca1``: positions in the sorted file list (default all);
            ``drosophila_vnc``: labelled section numbers (default all).

    Raises:
        ValueError: unknown kind, an index out of range.
        FileNotFoundError: missing folders or files (named).

    Example:
        >>> from cseg_monai.data.phantom import write_organelle_dataset
        >>> import tempfile
        >>> root = write_organelle_dataset(tempfile.mkdtemp(), n_slices=2, shape=(64, 64))
        >>> [sorted(i) for i in datalist("folder", root, [1])]
        [['image', 'kind', 'label']]
    """
    _check_kind(kind)
    root = Path(root).expanduser()
    if kind == "epfl_ca1":
        return [{**item, "kind": kind} for item in epfl_ca1.datalist(root, indices)]
    if kind == "drosophila_vnc":
        sections = drosophila_vnc.list_sections(root)
        chosen = sections if indices is None else [int(i) for i in indices]
        bad = sorted(set(chosen) - set(sections))
        if bad:
            raise ValueError(f"sections {bad} not in {root}: it holds sections {sections}")
        path = str(root.resolve())
        return [{"image": path, "sections": chosen, "kind": kind}]
    pairs = _folder_pairs(root)
    chosen = list(range(len(pairs))) if indices is None else [int(i) for i in indices]
    bad = [i for i in chosen if not 0 <= i < len(pairs)]
    if bad:
        raise ValueError(f"indices {bad} out of range: {root / 'images'} holds {len(pairs)} images")
    items = []
    for i in chosen:
        image, label = pairs[i]
        if label is None:
            raise FileNotFoundError(f"{root / 'labels' / (image.name.split('.')[0] + '.tif')}: label of {image} missing")
        items.append({"image": str(image.resolve()), "label": str(label.resolve()), "kind": kind})
    return items


def default_split(root: str | os.PathLike, val_fraction: float = 0.2) -> tuple[list[int], list[int]]:
    """``(train, val)`` positions of a ``folder`` data set: the last ``ceil(val_fraction * n)`` items validate.

    Raises:
        ValueError: fewer than 2 items, or ``val_fraction`` outside (0, 1).

    Example:
        >>> from cseg_monai.data.phantom import write_organelle_dataset
        >>> import tempfile
        >>> default_split(write_organelle_dataset(tempfile.mkdtemp(), n_slices=6, shape=(32, 32)))
        ([0, 1, 2, 3], [4, 5])
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    n = len(_folder_pairs(Path(root).expanduser()))
    if n < 2:
        raise ValueError(f"{root}: a train/validation split needs at least 2 images, found {n}")
    n_val = min(n - 1, max(1, -(-int(round(val_fraction * n * 1000)) // 1000)))
    return list(range(n - n_val)), list(range(n - n_val, n))


def _check_labels(label: np.ndarray, source: str) -> np.ndarray:
    if label.dtype.kind == "f":
        if not np.all(np.isfinite(label)) or not np.array_equal(label, np.round(label)):
            raise ValueError(f"{source}: labels must be integer class ids, found non-integer values")
    values = np.unique(label)
    bad = values[((values < 0) | (values >= N_CLASSES)) & (values != IGNORE_INDEX)]
    if bad.size:
        raise ValueError(
            f"{source}: label values {bad[:10].tolist()} are not class ids 0..{N_CLASSES - 1} or {IGNORE_INDEX} (unlabelled)"
        )
    if not (values != IGNORE_INDEX).any():
        raise ValueError(f"{source}: no labelled voxel (every voxel is {IGNORE_INDEX})")
    return label.astype(np.uint8)


def load_item(item: dict) -> tuple[np.ndarray, np.ndarray]:
    """Load an item of :func:`datalist` as ``(image, label)``.

    Returns:
        ``image`` float32 ``(1, [Z,] Y, X)`` scaled to [0, 1] (uint8 / 255; other dtypes by
        their min/max), ``label`` uint8 ``(1, [Z,] Y, X)`` class ids with 255 = unlabelled.

    Raises:
        ValueError: image not finite, shape mismatch, label values out of range (file named).

    Example:
        >>> from cseg_monai.data.phantom import write_organelle_dataset
        >>> import tempfile
        >>> root = write_organelle_dataset(tempfile.mkdtemp(), n_slices=1, shape=(64, 64))
        >>> img, lab = load_item(datalist("folder", root)[0])
        >>> img.shape, img.dtype, lab.shape, lab.dtype
        ((1, 64, 64), dtype('float32'), (1, 64, 64), dtype('uint8'))
    """
    kind = item.get("kind", "folder")
    _check_kind(kind)
    if kind == "epfl_ca1":
        train = Path(item["image"]).parent.parent
        image, label = epfl_ca1.load_slice(train, item["slice_id"])
        source = item["image"]
    elif kind == "drosophila_vnc":
        image, label = drosophila_vnc.load_stack(item["image"])
        sections = drosophila_vnc.list_sections(item["image"])
        keep = np.isin(sections, item.get("sections", sections))
        label = label.copy()
        label[~keep] = IGNORE_INDEX
        source = item["image"]
    else:
        image = np.asarray(load_image(item["image"])[0])
        label = np.asarray(load_image(item["label"])[0])
        source = item["label"]
        if image.shape != label.shape:
            raise ValueError(f"{item['label']}: label shape {label.shape} differs from image {item['image']} {image.shape}")
    scaled = scale_image(image, item["image"])
    label = _check_labels(np.asarray(label), source)
    return scaled[None], label[None]


def scale_image(image: np.ndarray, source: str = "<image>") -> np.ndarray:
    """The organelle bundle's intensity scaling: uint8 / 255, other dtypes min-max to [0, 1].

    Raises:
        ValueError: empty image, NaN or infinite values (``source`` is named).

    Example:
        >>> scale_image(np.array([[0, 255]], np.uint8)).tolist(), scale_image(np.array([[2.0, 4.0]])).tolist()
        ([[0.0, 1.0]], [[0.0, 1.0]])
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"{source}: empty image")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    scaled = image.astype(np.float32)
    if not np.all(np.isfinite(scaled)):
        raise ValueError(f"{source}: image holds NaN or infinite values")
    lo, hi = float(scaled.min()), float(scaled.max())
    return (scaled - lo) / np.float32(hi - lo) if hi > lo else np.zeros_like(scaled)
