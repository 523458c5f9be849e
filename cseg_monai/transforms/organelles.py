"""Load organelle data set items (any layout of :mod:`cseg_monai.data.datasets.organelles`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from cseg_monai.data.datasets.organelles import load_item, scale_image
from cseg_monai.transforms._meta import source_name

__all__ = ["LoadOrganelled", "ScaleOrganelleIntensityd"]


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


class ScaleOrganelleIntensityd(MapTransform):
    """Scale images as the organelle bundle trains on them: uint8 / 255, other dtypes min-max.

    Apply it to images read as stored (``LoadImaged(..., dtype=None)``): the dtype decides.

    Example:
        >>> import numpy as np
        >>> out = ScaleOrganelleIntensityd("image")({"image": np.array([[[0, 51]]], np.uint8)})
        >>> [round(v, 2) for v in out["image"].flatten().tolist()]
        [0.0, 0.2]
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
            scaled = torch.from_numpy(scale_image(arr, source_name(d, key)))
            d[key] = MetaTensor(scaled, meta=dict(value.meta)) if isinstance(value, MetaTensor) else scaled
        return d
