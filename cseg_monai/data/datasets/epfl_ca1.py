"""EPFL CA1 hippocampus FIB-SEM with third-party multi-class organelle masks.

Raw data: Lucchi, Smith, Achanta, Knott, Fua 2012, "Supervoxel-based segmentation of
mitochondria in EM image stacks with learned shape features", IEEE TMI 31(2):474-486
(EPFL CVLab). The per-class masks come from third-party annotators (MIT-licensed source
repository). Please cite Lucchi et al.

Local layout (as in ``../shared/data/epfl_ca1_multiclass``)::

    DATASET_DIR/epfl_train/slices/trainingNNNN.png                    raw, uint8 grey, 768 x 1024
    DATASET_DIR/epfl_train/<mask folder>/trainingNNNN.png              one binary mask per class

Mask PNG modes are mixed (``LA``, ``RGBA``): they are read as grey with
:func:`~cseg_monai.data.readers.load_image` and thresholded ``> 127``. NNNN is the z index
in the EPFL stack. Pixels in no mask are cytoplasm.

Class ids (:data:`ORGANELLE_CLASSES`): 0 cytoplasm, 1 membrane, 2 mitochondrion,
3 mitochondrion membrane, 4 synapse, 5 vesicle. ``axon`` is merged into cytoplasm (0).

Masks overlap; the class of a pixel is the FIRST mask that holds it in this precedence
(:data:`PRECEDENCE`)::

    mitochondrial boundaries (3) > mitochondrion (2) > PSD (4) > vesicles (5) > membranes (1) > cytoplasm (0)

Overlaps measured on 6 slices (0000, 0013, 0042, 0089, 0135, 0164), in pixels:
mitochondrion & mitochondrial boundaries 137966 (the boundary lies inside the
mitochondrion, so it wins); membranes & vesicles 928, & mitochondrion 750, & mitochondrial
boundaries 611, & PSD 519, & axon 480 (membrane masks are thick and coarse: the more
specific organelle wins); mitochondrion & vesicles 86, mitochondrial boundaries & vesicles 89
(vesicles do not lie in mitochondria: mitochondrion wins); PSD & vesicles 77 (synapse
wins); mitochondrion/boundaries & PSD 0.

Source:
    :data:`RAW_SOURCE_URL` (raw volume). No checksum is recorded here for the multi-class
    masks: we do not know a published one, so none is invented.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cseg_monai.common.constants import ORGANELLE_CLASSES  # re-exported: the class names of this set
from cseg_monai.data.readers import list_images, load_image

__all__ = [
    "RAW_SOURCE_URL",
    "ORGANELLE_CLASSES",
    "MASK_FOLDERS",
    "PRECEDENCE",
    "IMAGE_FOLDER",
    "list_slices",
    "load_slice",
    "datalist",
]

RAW_SOURCE_URL = "https://www.epfl.ch/labs/cvlab/data/data-em/"
IMAGE_FOLDER = "slices"
#: mask folder -> class id
MASK_FOLDERS = {
    "membranes": 1,
    "mitochondrion": 2,
    "mitochondrial boundaries": 3,
    "PSD": 4,
    "vesicles": 5,
    "axon": 0,
}
#: mask folders from highest to lowest precedence
PRECEDENCE = ("mitochondrial boundaries", "mitochondrion", "PSD", "vesicles", "membranes", "axon")
_THRESHOLD = 127


def _train_dir(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    train = root / "epfl_train" if (root / "epfl_train").is_dir() else root
    if not (train / IMAGE_FOLDER).is_dir():
        raise FileNotFoundError(f"{train / IMAGE_FOLDER} is missing: expected DATASET_DIR/epfl_train/slices")
    return train


def list_slices(root: str | os.PathLike) -> list[str]:
    """Slice ids (file stems) in ``slices``, in natural order.

    Args:
        root: the ``epfl_ca1_multiclass`` folder (or its ``epfl_train`` folder).

    Example:
        >>> list_slices("../shared/data/epfl_ca1_multiclass")[:2]  # doctest: +SKIP
        ['training0000', 'training0001']
    """
    return [p.stem for p in list_images(_train_dir(root) / IMAGE_FOLDER, (".png",))]


def load_slice(root: str | os.PathLike, slice_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one raw slice and its combined organelle class map.

    Args:
        root: the ``epfl_ca1_multiclass`` folder (or its ``epfl_train`` folder).
        slice_id: a stem from :func:`list_slices`, e.g. ``"training0000"``.

    Returns:
        ``(image, labels)``, both ``uint8`` ``(Y, X)``; labels use :data:`ORGANELLE_CLASSES`
        ids combined with :data:`PRECEDENCE`.

    Raises:
        FileNotFoundError: the slice or one of its masks is missing (names the file).
        ValueError: a mask's shape differs from the image's (names the file).

    Example:
        >>> img, lab = load_slice("../shared/data/epfl_ca1_multiclass", "training0000")  # doctest: +SKIP
        >>> img.shape, lab.shape  # doctest: +SKIP
        ((768, 1024), (768, 1024))
    """
    train = _train_dir(root)
    image_path = train / IMAGE_FOLDER / f"{slice_id}.png"
    if not image_path.is_file():
        raise FileNotFoundError(f"{image_path}: no such slice")
    image = load_image(image_path)[0]
    if image.ndim != 2:
        raise ValueError(f"{image_path}: expected a 2D grey slice, got shape {image.shape}")
    image = np.asarray(image, dtype=np.uint8)
    labels = np.zeros(image.shape, dtype=np.uint8)
    assigned = np.zeros(image.shape, dtype=bool)
    for folder in PRECEDENCE:
        path = train / folder / f"{slice_id}.png"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: mask {folder!r} missing for slice {slice_id}")
        mask = load_image(path)[0]
        if mask.ndim == 3:  # truly coloured: treat as grey
            mask = mask.mean(axis=-1)
        if mask.shape != image.shape:
            raise ValueError(f"{path}: mask shape {mask.shape} differs from image {image_path} shape {image.shape}")
        new = (mask > _THRESHOLD) & ~assigned
        labels[new] = MASK_FOLDERS[folder]
        assigned |= new
    return image, labels


def datalist(root: str | os.PathLike, indices: Sequence[int] | None = None) -> list[dict]:
    """List ``{"image", "slice_id", "masks"}`` items (absolute paths) of the EPFL CA1 folder.

    Args:
        root: the ``epfl_ca1_multiclass`` folder (or its ``epfl_train`` folder).
        indices: positions in :func:`list_slices` to keep (default: all).

    Raises:
        ValueError: an index is out of range.
        FileNotFoundError: a mask file is missing.

    Example:
        >>> items = datalist("../shared/data/epfl_ca1_multiclass", [0])  # doctest: +SKIP
        >>> sorted(items[0])  # doctest: +SKIP
        ['image', 'masks', 'slice_id']
    """
    train = _train_dir(root)
    ids = list_slices(train)
    chosen = list(range(len(ids))) if indices is None else [int(i) for i in indices]
    bad = [i for i in chosen if not 0 <= i < len(ids)]
    if bad:
        raise ValueError(f"indices {bad} out of range: {train / IMAGE_FOLDER} holds {len(ids)} slices")
    items = []
    for i in chosen:
        masks = {}
        for folder in MASK_FOLDERS:
            path = train / folder / f"{ids[i]}.png"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: mask {folder!r} missing for slice {ids[i]}")
            masks[folder] = str(path.resolve())
        image = str((train / IMAGE_FOLDER / f"{ids[i]}.png").resolve())
        items.append({"image": image, "slice_id": ids[i], "masks": masks})
    return items
