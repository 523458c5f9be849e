"""Segmented anisotropic ssTEM of the Drosophila third-instar larva ventral nerve cord.

Gerhard, Funke, Martel, Cardona, Fetter 2013, "Segmented anisotropic ssTEM dataset of
neural tissue", figshare, doi:10.6084/m9.figshare.856713. Please cite it.

.. warning::
    Licence **CC BY-NC-SA 3.0**: non-commercial use only, share-alike. Use it for evaluation;
    never bundle it (or anything derived from it) into a release of this project.

Local layout (as in ``../shared/data/drosophila_vnc``)::

    DATASET_DIR/stack1/raw/NN.tif                   uint8 grey, 1024 x 1024, consecutive sections
    DATASET_DIR/stack1/labels/labelsNNNNNNNN.png    uint8 label codes (the source of truth)

The separate binary masks (``membranes``, ``mitochondria``, ``synapses``) mix 1-bit and 8-bit
PNGs with stray values and are NOT read here. Label codes and the organelle class ids they
map to (:data:`LABEL_CODE_TO_CLASS`):

===========================  ==========================================
code                         class
===========================  ==========================================
0, 32, 64, 96                oriented membrane -> 1 (membrane)
128                          membrane junction -> 1 (membrane)
159                          glia / extracellular -> 255 (IGNORE): no organelle class fits
191                          mitochondrion -> 2
223                          synapse -> 4
255                          intracellular -> 0 (cytoplasm)
===========================  ==========================================

Any other code raises ``ValueError`` naming the file. Voxel spacing :data:`SPACING_ZYX` is
(50, 4.6, 4.6) nm (sections are 45-50 nm thick; 50 nm is used).

Source:
    :data:`SOURCE_URL` (figshare). No checksum is recorded here: we do not know a
    published one, so none is invented.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cseg_monai.common.constants import IGNORE_INDEX
from cseg_monai.data.readers import list_images, load_image

__all__ = [
    "SOURCE_URL",
    "DOI",
    "LICENSE",
    "SPACING_ZYX",
    "SPACING_UNIT",
    "LABEL_CODE_TO_CLASS",
    "list_sections",
    "labels_to_classes",
    "load_stack",
]

SOURCE_URL = "https://figshare.com/articles/dataset/Segmented_anisotropic_ssTEM_dataset_of_neural_tissue/856713"
DOI = "10.6084/m9.figshare.856713"
LICENSE = "CC BY-NC-SA 3.0"
#: (Z, Y, X) voxel spacing in nanometres
SPACING_ZYX = (50.0, 4.6, 4.6)
SPACING_UNIT = "nm"
#: label code in ``labels/*.png`` -> organelle class id (255 = IGNORE)
LABEL_CODE_TO_CLASS = {
    0: 1,
    32: 1,
    64: 1,
    96: 1,
    128: 1,
    159: IGNORE_INDEX,
    191: 2,
    223: 4,
    255: 0,
}

_LUT = np.full(256, -1, dtype=np.int16)
for _code, _cls in LABEL_CODE_TO_CLASS.items():
    _LUT[_code] = _cls
_NUM = re.compile(r"(\d+)")


def _section_number(path: Path) -> int:
    found = _NUM.findall(path.stem)
    if not found:
        raise ValueError(f"{path}: file name has no section number")
    return int(found[-1])


def _stack_dir(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    stack = root / "stack1" if (root / "stack1").is_dir() else root
    for sub in ("raw", "labels"):
        if not (stack / sub).is_dir():
            raise FileNotFoundError(f"{stack / sub} is missing: expected DATASET_DIR/stack1/{{raw,labels}}")
    return stack


def list_sections(root: str | os.PathLike) -> list[int]:
    """Section numbers that have both a raw TIFF and a label PNG, in increasing order.

    Args:
        root: the ``drosophila_vnc`` folder (or its ``stack1`` folder).

    Raises:
        FileNotFoundError: when ``raw`` or ``labels`` is missing.

    Example:
        >>> list_sections("../shared/data/drosophila_vnc")[:3]  # doctest: +SKIP
        [0, 1, 2]
    """
    stack = _stack_dir(root)
    raw = {_section_number(p) for p in list_images(stack / "raw", (".tif", ".tiff"))}
    labels = {_section_number(p) for p in list_images(stack / "labels", (".png",))}
    return sorted(raw & labels)


def labels_to_classes(codes: np.ndarray, path: str | os.PathLike | None = None) -> np.ndarray:
    """Map label codes (0..255, see module docstring) to organelle class ids.

    Args:
        codes: uint8 label image as read from ``labels/*.png``.
        path: file it came from, named in error messages.

    Returns:
        ``uint8`` array of the same shape (255 = IGNORE for glia/extracellular).

    Raises:
        ValueError: on a code not in :data:`LABEL_CODE_TO_CLASS`.

    Example:
        >>> labels_to_classes(np.array([[0, 128, 159], [191, 223, 255]], np.uint8)).tolist()
        [[1, 1, 255], [2, 4, 0]]
    """
    arr = np.asarray(codes)
    if arr.dtype != np.uint8:
        raise ValueError(f"{path or 'labels'}: expected uint8 label codes, got dtype {arr.dtype}")
    out = _LUT[arr]
    if (out < 0).any():
        bad = np.unique(arr[out < 0])
        raise ValueError(
            f"{path or 'labels'}: unknown label codes {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}; "
            f"expected only {sorted(LABEL_CODE_TO_CLASS)}"
        )
    return out.astype(np.uint8)


def load_stack(
    root: str | os.PathLike, sections: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load raw sections and their organelle class labels as ``(Z, Y, X)`` uint8 arrays.

    Args:
        root: the ``drosophila_vnc`` folder (or its ``stack1`` folder).
        sections: section numbers to load, in that order (default: all of :func:`list_sections`).

    Returns:
        ``(raw, labels)``; spacing is :data:`SPACING_ZYX` (nm).

    Raises:
        FileNotFoundError: missing folder or section file.
        ValueError: unknown label codes, shape mismatch, non-2D or non-uint8 raw section.

    Example:
        >>> raw, lab = load_stack("../shared/data/drosophila_vnc", sections=[0, 1])  # doctest: +SKIP
        >>> raw.shape, lab.shape  # doctest: +SKIP
        ((2, 1024, 1024), (2, 1024, 1024))
    """
    stack = _stack_dir(root)
    available = list_sections(stack)
    chosen = available if sections is None else [int(s) for s in sections]
    if not chosen:
        raise ValueError(f"{stack}: no section to load")
    missing = [s for s in chosen if s not in available]
    if missing:
        raise FileNotFoundError(f"{stack}: sections {missing} have no raw+label pair; available: {available}")
    raw_files = {_section_number(p): p for p in list_images(stack / "raw", (".tif", ".tiff"))}
    lab_files = {_section_number(p): p for p in list_images(stack / "labels", (".png",))}
    raws, labs = [], []
    for s in chosen:
        raw = load_image(raw_files[s])[0]
        codes = load_image(lab_files[s])[0]
        if raw.ndim != 2 or raw.dtype != np.uint8:
            raise ValueError(f"{raw_files[s]}: expected a 2D uint8 section, got shape {raw.shape} {raw.dtype}")
        if codes.shape != raw.shape:
            raise ValueError(f"{lab_files[s]}: label shape {codes.shape} differs from raw {raw_files[s]} {raw.shape}")
        raws.append(raw)
        labs.append(labels_to_classes(codes, lab_files[s]))
    return np.stack(raws), np.stack(labs)
