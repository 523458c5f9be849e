"""Load organelle data set items (any layout of :mod:`cseg_monai.data.datasets.organelles`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from cseg_monai.data.datasets.organelles import load_item

__all__ = ["LoadOrganelled"]


class LoadOrganelled(MapTransform):
    """Replace an item's paths by ``image`` (float32 ``(1, [Z,] Y, X)`` in [0, 1]) and ``label``.

    The label is uint8 class ids with 255 = unlabelled; both are MONAI ``MetaTensor`` whose
    ``filename_or_obj`` is the image path (it names the outputs and the errors).

    Args:
        image_key: key of the image path (and of the loaded image).
        label_key: key of the label path (and of the loaded label).

    Example:
        >>> from cseg_monai.data.phantom import write_organelle_dataset
        >>> from cseg_monai.data.datasets.organelles import datalist
        >>> import tempfile
        >>> root = write_organelle_dataset(tempfile.mkdtemp(), n_slices=1, shape=(64, 64))
        >>> d = LoadOrganelled()(datalist("folder", root)[0])
        >>> tuple(d["image"].shape), d["label"].dtype
        ((1, 64, 64), torch.uint8)
    """

    def __init__(self, image_key: Hashable = "image", label_key: Hashable = "label") -> None:
        super().__init__([image_key, label_key])
        self.image_key = image_key
        self.label_key = label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image, label = load_item(d)
        meta = {"filename_or_obj": str(d[self.image_key]), "kind": d.get("kind", "folder")}
        d[self.image_key] = MetaTensor(torch.from_numpy(image), meta=dict(meta))
        d[self.label_key] = MetaTensor(torch.from_numpy(label), meta=dict(meta))
        return d
