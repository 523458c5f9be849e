"""Synaptic cleft volumes: the Drosophila VNC stack's synapse labels, EPFL's PSD masks, phantoms, or a folder of one's own.

Four kinds of items (:data:`KINDS`), each loaded by :func:`load_item` as ``(image, clefts,
voxel_size_nm)``: the raw volume as stored, a uint8 0/1 cleft mask ``(Z, Y, X)``, and the voxel
size in nm (``None`` when unknown):

* ``drosophila_vnc``: the segmented ssTEM stack of :mod:`cseg_monai.data.datasets.drosophila_vnc`
  (label code 223 = synapse, read from ``labels/*.png``), the sections of ``sections`` stacked in
  order, voxel size (50, 4.6, 4.6) nm. **Licence CC BY-NC-SA 3.0**: for evaluation; weights
  trained on it are never shipped.
* ``epfl_psd``: the EPFL CA1 hippocampus FIB-SEM slices of :mod:`cseg_monai.data.datasets.epfl_ca1`
  with their ``PSD`` (postsynaptic density) masks, a 2D set: each labelled slice (``sections``
  are positions in the sorted slice list) becomes a volume of ``depth`` identical sections, so
  that the anisotropic 3D networks train on it; voxel size (5, 5, 5) nm. **Licence MIT** (masks;
  raw data EPFL CVLab): weights trained on it may be shipped.
* ``phantom``: a synthetic anisotropic EM volume of :func:`cseg_monai.data.phantom.make_phantom`
  whose synaptic densities are the clefts (seeded, so the same item gives the same volume),
  nominal voxel size (46, 4.6, 4.6) nm (sections ten pixels thick).
* ``folder``: ``ROOT/images/NAME.*`` with ``ROOT/labels/NAME.*`` (any volume the readers read);
  a label voxel is cleft where its value is > 0 (a 0/1 mask, or cleft ids). The voxel size is
  the image file's when stated in nm (um is converted).

Example:
    >>> items = datalist("phantom", shape=(4, 64, 64), n_volumes=2)
    >>> [(i["kind"], i["seed"]) for i in items]
    [('phantom', 0), ('phantom', 1)]
    >>> image, clefts, voxel = load_item(items[0])
    >>> image.shape, clefts.dtype, sorted(np.unique(clefts).tolist()), voxel
    ((4, 64, 64), dtype('uint8'), [0, 1], (46.0, 4.6, 4.6))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cseg_monai.data.datasets import drosophila_vnc, epfl_ca1
from cseg_monai.data.phantom import SYNAPSE, make_phantom
from cseg_monai.data.readers import list_images, load_image

__all__ = ["KINDS", "VNC_SYNAPSE_CLASS", "PHANTOM_VOXEL_NM", "EPFL_VOXEL_NM", "EPFL_PSD_FOLDER", "datalist", "load_item"]

KINDS = ("drosophila_vnc", "epfl_psd", "phantom", "folder")
#: the organelle class id :func:`drosophila_vnc.labels_to_classes` gives label code 223 (synapse)
VNC_SYNAPSE_CLASS = drosophila_vnc.LABEL_CODE_TO_CLASS[223]
#: the phantoms' nominal voxel size (nm): ten in-plane pixels per section, as ssTEM
PHANTOM_VOXEL_NM = (46.0, 4.6, 4.6)
#: the EPFL CA1 FIB-SEM voxel size (nm), isotropic
EPFL_VOXEL_NM = (5.0, 5.0, 5.0)
#: the EPFL mask folder of the postsynaptic densities
EPFL_PSD_FOLDER = "PSD"
_UNIT_TO_NM = {"nm": 1.0, "nanometer": 1.0, "um": 1000.0, "micron": 1000.0, "micrometer": 1000.0, "µm": 1000.0}


def datalist(
    kind: str,
    root: str | os.PathLike | None = None,
    sections: Sequence[int] | None = None,
    shape: Sequence[int] = (16, 192, 192),
    n_volumes: int = 1,
    first_seed: int = 0,
    depth: int = 2,
) -> list[dict]:
    """Items for :func:`load_item`.

    Args:
        kind: one of :data:`KINDS`.
        root: the data set folder (``drosophila_vnc``, ``epfl_psd``, ``folder``).
        sections: ``drosophila_vnc``: the section numbers of the one volume item (default all);
            ``epfl_psd``: positions in the sorted slice list, one item each (default all);
            ``folder``: positions in the sorted image list (default all).
        shape / n_volumes / first_seed: ``phantom``: ``n_volumes`` volumes of ``shape`` (Z, Y, X),
            seeds ``first_seed, first_seed + 1, ...``.
        depth: ``epfl_psd``: the number of identical sections each slice is repeated into.

    Raises:
        ValueError: unknown kind, sections or positions that do not exist (or none chosen for
            ``drosophila_vnc`` / ``epfl_psd``), bad phantom arguments, ``depth`` < 1.
        FileNotFoundError: a missing folder, or an image without its label (named).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "phantom":
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) < 1 or int(n_volumes) < 1:
            raise ValueError(f"phantoms need a (Z, Y, X) shape of positive sizes and n_volumes >= 1, got {shape}, {n_volumes}")
        return [{"kind": kind, "seed": int(first_seed) + k, "shape": list(shape)} for k in range(int(n_volumes))]
    if root is None:
        raise ValueError(f"kind {kind!r} needs the data set folder (root)")
    root = Path(root).expanduser()
    if kind == "epfl_psd":
        if int(depth) < 1:
            raise ValueError(f"depth must be >= 1 sections, got {depth}")
        n_slices = len(epfl_ca1.list_slices(root))
        positions = list(range(n_slices)) if sections is None else _positions(sections, n_slices, root)
        if not positions:
            raise ValueError(f"no EPFL slice chosen in {root} (sections {sections}): it holds {n_slices}")
        slices = epfl_ca1.datalist(root, positions)  # the slice and mask paths, each mask checked to exist
        return [{"kind": kind, "image": i["image"], "label": i["masks"][EPFL_PSD_FOLDER], "slice_id": i["slice_id"], "depth": int(depth)} for i in slices]
    if kind == "drosophila_vnc":
        available = drosophila_vnc.list_sections(root)
        chosen = available if sections is None else [int(s) for s in sections]
        bad = sorted(set(chosen) - set(available))
        if bad or not chosen:
            raise ValueError(f"sections {bad or chosen} not in {root}: it holds sections {available}")
        return [{"kind": kind, "image": str(root.resolve()), "sections": chosen}]
    images, labels = root / "images", root / "labels"
    for folder in (images, labels):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist: a cleft folder holds images/ and labels/ with the same file names")
    files = list_images(images)
    by_stem = {_stem(p): p for p in list_images(labels)}
    chosen_files = files if sections is None else [files[i] for i in _positions(sections, len(files), images)]
    items = []
    for image in chosen_files:
        label = by_stem.get(_stem(image))
        if label is None:
            raise FileNotFoundError(f"{image}: no label in {labels} with the stem {_stem(image)!r}")
        items.append({"kind": kind, "image": str(image.resolve()), "label": str(label.resolve())})
    return items


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".ome.tif", ".ome.tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _positions(indices: Sequence[int], n: int, folder: Path) -> list[int]:
    chosen = [int(i) for i in indices]
    bad = [i for i in chosen if not 0 <= i < n]
    if bad:
        raise ValueError(f"positions {bad} out of range: {folder} holds {n} images")
    return chosen


def _voxel_nm(meta: dict) -> tuple[float, ...] | None:
    spacing = meta.get("spacing")
    unit = str(meta.get("spacing_unit", "")).lower()
    if spacing is None or unit not in _UNIT_TO_NM:
        return None
    return tuple(float(s) * _UNIT_TO_NM[unit] for s in np.asarray(spacing).ravel())


def _epfl_psd_slice(image_path: str, mask_path: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """One EPFL slice and its PSD mask, each repeated into ``depth`` sections."""
    image = np.asarray(load_image(image_path)[0])
    mask = np.asarray(load_image(mask_path)[0])
    if mask.ndim == 3:  # truly coloured: treat as grey, as epfl_ca1.load_slice does
        mask = mask.mean(axis=-1)
    if image.ndim != 2:
        raise ValueError(f"{image_path}: expected a 2D grey slice, got shape {image.shape}")
    if mask.shape != image.shape:
        raise ValueError(f"{mask_path}: mask shape {mask.shape} differs from the slice {image_path} of shape {image.shape}")
    clefts = (mask > 127).astype(np.uint8)
    return np.repeat(image[None], depth, axis=0), np.repeat(clefts[None], depth, axis=0)


def load_item(item: dict) -> tuple[np.ndarray, np.ndarray, tuple[float, ...] | None]:
    """``(image, clefts, voxel_size_nm)`` of one :func:`datalist` item (see the module docstring).

    Raises:
        ValueError: an unknown kind, a non-3D volume, image and label of different shapes, or
            negative / non-integer label values (names the file).
        FileNotFoundError: a missing file.
    """
    kind = item.get("kind")
    if kind == "phantom":
        phantom = make_phantom(tuple(item["shape"]), int(item["seed"]), spacing=(10.0, 1.0, 1.0))
        return phantom.image, (phantom.semantic == SYNAPSE).astype(np.uint8), PHANTOM_VOXEL_NM
    if kind == "epfl_psd":
        return (*_epfl_psd_slice(item["image"], item["label"], int(item.get("depth", 2))), EPFL_VOXEL_NM)
    if kind == "drosophila_vnc":
        raw, classes = drosophila_vnc.load_stack(item["image"], item["sections"])
        return raw, (classes == VNC_SYNAPSE_CLASS).astype(np.uint8), drosophila_vnc.SPACING_ZYX
    if kind != "folder":
        raise ValueError(f"item kind must be one of {KINDS}, got {kind!r}")
    image, meta = load_image(item["image"])
    label = load_image(item["label"])[0]
    if image.ndim != 3:
        raise ValueError(f"{item['image']}: expected a grey (Z, Y, X) volume, got shape {image.shape}")
    if label.shape != image.shape:
        raise ValueError(f"{item['label']}: label shape {label.shape} differs from the image's {image.shape} ({item['image']})")
    if label.dtype.kind == "f" and not np.array_equal(label, np.round(label)) or (label.size and label.min() < 0):
        raise ValueError(f"{item['label']}: cleft labels must be 0 (background) and positive integers, got values from {label.min()} to {label.max()}")
    return image, (label > 0).astype(np.uint8), _voxel_nm(meta)
