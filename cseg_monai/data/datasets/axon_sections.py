"""Serial sections with traced objects: tube phantoms, or folders of raw stacks and 3D id stacks.

Items for the axon tracing bundle. Each is one volume ``(Z, Y, X)`` of raw sections with its
true 3D ids (one id per traced object; 0 background):

- ``phantom``: :func:`~cseg_monai.data.tube_phantom.make_tube_phantom` volumes drawn from their
  seed (each with one blank and one shifted section at seeded places), so a datalist is a few
  numbers and the data need no files;
- ``folder``: ``DATASET_DIR/images/NAME.tif`` (or any format the readers read) with
  ``DATASET_DIR/labels/NAME.*`` holding the 3D ids of the same shape; ``indices`` select files.

The network learns the interior of the objects' profiles: :func:`interior_target` is the
ids' foreground less each section's object borders, so that touching profiles stay apart.

Example:
    >>> items = datalist("phantom", shape=(6, 64, 64), n_phantoms=2)
    >>> image, ids, spacing = load_item(items[0])
    >>> image.shape, ids.shape, spacing, interior_target(ids).dtype
    ((6, 64, 64), (6, 64, 64), None, dtype('uint8'))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage.segmentation import find_boundaries

from cseg_monai.data.readers import ImageReadError, list_images, load_image
from cseg_monai.data.tube_phantom import make_tube_phantom
from cseg_monai.data.writers import output_stem

__all__ = ["KINDS", "datalist", "interior_target", "load_item"]

KINDS = ("phantom", "folder")


def datalist(
    kind: str = "phantom",
    dataset_dir: str | os.PathLike | None = None,
    indices: Sequence[int] | None = None,
    shape: Sequence[int] = (24, 192, 192),
    n_phantoms: int = 4,
    seed_offset: int = 0,
) -> list[dict[str, Any]]:
    """The items of a data set (see the module docstring).

    Raises:
        ValueError: an unknown kind, a folder without images/ and labels/, indices out of range.
        FileNotFoundError: a missing folder or label file, named.
    """
    if kind not in KINDS:
        raise ValueError(f"dataset_kind must be one of {KINDS}, got {kind!r}")
    if kind == "phantom":
        if int(n_phantoms) < 1:
            raise ValueError(f"n_phantoms must be >= 1, got {n_phantoms}")
        return [{"kind": "phantom", "seed": int(seed_offset) + k, "shape": [int(s) for s in shape]} for k in range(int(n_phantoms))]
    if dataset_dir is None:
        raise ValueError("dataset_kind 'folder' needs a dataset_dir with images/ and labels/")
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset_dir {root} does not exist")
    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise ValueError(f"{root}: a folder data set holds images/ (raw stacks) and labels/ (3D ids of the same names)")
    files = list_images(images)
    by_stem: dict[str, list[Path]] = {}
    for p in list_images(labels):
        by_stem.setdefault(output_stem(p), []).append(p)
    chosen = range(len(files)) if indices is None else [int(i) for i in indices]
    items = []
    for i in chosen:
        if not 0 <= i < len(files):
            raise ValueError(f"{images}: index {i} is out of range ({len(files)} stacks)")
        match = by_stem.get(output_stem(files[i]), [])
        if not match:
            raise FileNotFoundError(f"{labels}: no label stack for {files[i].name}")
        if len(match) > 1:
            raise ValueError(f"{labels}: several label stacks for {files[i].name}: {', '.join(p.name for p in match)}")
        items.append({"kind": "folder", "image": str(files[i]), "label": str(match[0])})
    return items


def interior_target(ids: np.ndarray) -> np.ndarray:
    """``uint8`` interior of every section's profiles: the foreground less each profile's inner border.

    Example:
        >>> ids = np.zeros((1, 6, 10), np.int64); ids[0, 1:5, 1:5] = 1; ids[0, 1:5, 5:9] = 2
        >>> interior_target(ids)[0].sum(axis=0).tolist()  # the touching columns 4 and 5 are borders
        [0, 0, 2, 2, 0, 0, 2, 2, 0, 0]
    """
    lab = np.asarray(ids)
    out = np.zeros(lab.shape, np.uint8)
    for z in range(lab.shape[0]):
        out[z] = (lab[z] > 0) & ~find_boundaries(lab[z], mode="inner")
    return out


def load_item(item: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, tuple[float, ...] | None]:
    """``(image float32, ids int64, voxel size or None)`` of one item, both ``(Z, Y, X)``.

    Raises:
        ImageReadError / ValueError: unreadable files, shapes that differ or are not 3D, negative
            or non-integer ids; the message names the file.
    """
    if item.get("kind") == "phantom":
        seed = int(item["seed"])
        z = int(item["shape"][0])
        rng = np.random.default_rng(seed + 7919)
        damaged = [int(v) for v in rng.choice(np.arange(1, z - 1), size=2, replace=False)] if z > 3 else []
        n_tubes = max(4, int(item["shape"][1]) * int(item["shape"][2]) // 2600)
        image, ids = make_tube_phantom(item["shape"], n_tubes=n_tubes, seed=seed, missing_sections=damaged[:1], shifted_sections=damaged[1:])
        return image.astype(np.float32), ids.astype(np.int64), None
    image, meta = load_image(item["image"])
    ids, _ = load_image(item["label"])
    image, ids = np.asarray(image), np.asarray(ids)
    if image.ndim != 3:
        raise ImageReadError(f"{item['image']}: expected a (Z, Y, X) stack of sections, got shape {image.shape}")
    if ids.shape != image.shape:
        raise ValueError(f"{item['label']}: ids of shape {ids.shape} for sections of shape {image.shape} ({item['image']})")
    if not np.issubdtype(ids.dtype, np.integer) or (ids.size and ids.min() < 0):
        raise ValueError(f"{item['label']}: ids must be non-negative integers, got {ids.dtype}")
    spacing = meta.get("spacing")
    voxel = tuple(float(s) for s in np.asarray(spacing).reshape(-1)) if spacing is not None else None
    return image.astype(np.float32), ids.astype(np.int64), voxel
