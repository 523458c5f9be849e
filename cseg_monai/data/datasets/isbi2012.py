"""ISBI 2012 EM segmentation challenge (ssTEM, Drosophila first-instar larva ventral nerve cord).

Arganda-Carreras et al. 2015, "Crowdsourcing the creation of image segmentation algorithms
for connectomics", Front. Neuroanat. 9:142, doi:10.3389/fnana.2015.00142; data from
Cardona et al. 2010, PLoS Biol. 8(10):e1000502. Please cite both.

Local layout (as in ``../shared/data/isbi2012``)::

    DATASET_DIR/train/image/{0..N-1}.png   uint8 grey, 512 x 512 (4 x 4 x 50 nm voxels)
    DATASET_DIR/train/label/{0..N-1}.png   uint8: 0 = membrane (cell boundary), 255 = cell interior
    DATASET_DIR/test/image/{0..M-1}.png    unlabelled

The label is INVERTED with respect to what a network predicts: :func:`label_to_membrane`
turns it into a binary membrane mask (1 = membrane). Files are matched by stem and ordered
naturally by the number in their name (``2.png`` before ``10.png``).

Sources:
    - Official challenge page (registration needed, no stable direct link):
      :data:`OFFICIAL_URL`.
    - The same training volume and labels as one HDF5 file, as used by torch-em:
      :data:`MIRROR_URL`, SHA-256 :data:`MIRROR_SHA256`; :func:`download` fetches it,
      checks the checksum and converts it to the local layout above.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
from monai.apps.utils import download_url
from PIL import Image

from cseg_monai.data.readers import list_images
from cseg_monai.data.writers import atomic_path

__all__ = [
    "OFFICIAL_URL",
    "MIRROR_URL",
    "MIRROR_SHA256",
    "MEMBRANE_VALUE",
    "INTERIOR_VALUE",
    "DEFAULT_TRAIN_INDICES",
    "DEFAULT_VAL_INDICES",
    "label_to_membrane",
    "datalist",
    "download",
]

OFFICIAL_URL = "https://imagej.net/events/isbi-2012-segmentation-challenge"
MIRROR_URL = "https://oc.embl.de/index.php/s/h0TkwqxU0PJDdMd/download"
MIRROR_SHA256 = "0e10fe909a1243084d91773470856993b7d40126a12e85f0f1345a7a9e512f29"
MEMBRANE_VALUE = 0
INTERIOR_VALUE = 255
#: the default split of our copy: slices 0-19 train, 20-23 validation
DEFAULT_TRAIN_INDICES = tuple(range(0, 20))
DEFAULT_VAL_INDICES = tuple(range(20, 24))

_IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


def label_to_membrane(label: np.ndarray, path: str | os.PathLike | None = None) -> np.ndarray:
    """Convert an ISBI label (0 = membrane, 255 = interior) to a binary membrane mask.

    Args:
        label: the label image as read from disk.
        path: the file it came from, named in error messages.

    Returns:
        ``uint8`` array of the same shape: 1 = membrane, 0 = cell interior.

    Raises:
        ValueError: when the label holds values other than 0 and 255.

    Example:
        >>> label_to_membrane(np.array([[0, 255], [255, 0]], np.uint8)).tolist()
        [[1, 0], [0, 1]]
    """
    arr = np.asarray(label)
    values = np.unique(arr)
    bad = values[~np.isin(values, (MEMBRANE_VALUE, INTERIOR_VALUE))]
    if bad.size:
        where = f"{path}: " if path is not None else ""
        raise ValueError(
            f"{where}ISBI 2012 label must contain only {MEMBRANE_VALUE} (membrane) and {INTERIOR_VALUE} "
            f"(interior), found {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}"
        )
    return (arr == MEMBRANE_VALUE).astype(np.uint8)


def datalist(
    dataset_dir: str | os.PathLike,
    indices: list[int] | tuple[int, ...] | None = None,
    split: str = "train",
    with_labels: bool = True,
) -> list[dict[str, str]]:
    """List ``{"image": ..., "label": ...}`` items of an ISBI-style folder.

    Args:
        dataset_dir: folder holding ``train/image``, ``train/label`` (and ``test/image``).
        indices: positions in the naturally sorted list of images to keep (default: all).
        split: ``"train"`` or ``"test"``.
        with_labels: add the matching ``label`` path (required for ``"train"`` use).

    Returns:
        A list of dicts of absolute paths, in the order of ``indices``.

    Raises:
        FileNotFoundError: when ``dataset_dir``, its image folder or a label file is missing.
        ValueError: when the folder has no image or an index is out of range.

    Example:
        >>> items = datalist("../shared/data/isbi2012", indices=[20, 21])  # doctest: +SKIP
        >>> sorted(items[0])  # doctest: +SKIP
        ['image', 'label']
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(dataset_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset_dir {str(root)!r} does not exist or is not a folder; expected an ISBI-style folder "
            "with train/image and train/label (make one with `cseg phantom OUT`)"
        )
    image_dir = root / split / "image"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir} is missing: dataset_dir must hold {split}/image")
    images = list_images(image_dir, _IMAGE_SUFFIXES)
    chosen = list(range(len(images))) if indices is None else [int(i) for i in indices]
    out_of_range = [i for i in chosen if not 0 <= i < len(images)]
    if out_of_range:
        raise ValueError(f"indices {out_of_range} out of range: {image_dir} holds {len(images)} images")
    items = []
    label_dir = root / split / "label"
    for i in chosen:
        item = {"image": str(images[i].resolve())}
        if with_labels:
            candidates = [label_dir / (images[i].stem + s) for s in _IMAGE_SUFFIXES]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise FileNotFoundError(f"no label for {images[i]}: expected {candidates[0]}")
            item["label"] = str(found[0].resolve())
        items.append(item)
    return items


def download(
    dest: str | os.PathLike,
    *,
    raw_key: str = "volumes/raw",
    label_key: str = "volumes/labels/membranes",
    url: str = MIRROR_URL,
    sha256: str = MIRROR_SHA256,
) -> Path:
    """Download the training volume, check its SHA-256 and write the local PNG layout.

    Args:
        dest: output folder; ``dest/isbi.h5`` is kept, ``dest/train/{image,label}/N.png`` written.
        raw_key: HDF5 dataset of the raw volume (Z, Y, X).
        label_key: HDF5 dataset of the membrane labels (0 = membrane, 255 = interior).
        url: where to download from.
        sha256: expected checksum of the downloaded file.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Example:
        >>> download("data/isbi2012")  # doctest: +SKIP
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    h5_path = dest / "isbi.h5"
    download_url(url, str(h5_path), hash_val=sha256, hash_type="sha256")
    with h5py.File(h5_path, "r") as f:
        for key in (raw_key, label_key):
            if key not in f:
                names: list[str] = []
                f.visit(names.append)
                raise KeyError(f"{h5_path}: no dataset {key!r}; it holds {names}")
        raw, label = f[raw_key][:], f[label_key][:]
    if raw.shape != label.shape:
        raise ValueError(f"{h5_path}: raw {raw.shape} and labels {label.shape} differ in shape")
    for sub, vol in (("image", raw), ("label", label)):
        (dest / "train" / sub).mkdir(parents=True, exist_ok=True)
        for z, plane in enumerate(vol):
            with atomic_path(dest / "train" / sub / f"{z}.png") as tmp:
                Image.fromarray(np.asarray(plane, np.uint8)).save(tmp, format="PNG")
    return dest
