"""Axon tracing items: :class:`LoadAxonSectionsd` loads a volume of sections, its interior target and its true ids.

Example:
    >>> from cseg_monai.data.datasets.axon_sections import datalist
    >>> d = LoadAxonSectionsd()(datalist("phantom", shape=(4, 64, 64))[0])
    >>> tuple(d["image"].shape), d["label"].dtype, d["ids"].dtype, d["image"].meta["filename_or_obj"]
    ((1, 4, 64, 64), torch.uint8, torch.int64, 'phantom_0')
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from cseg_monai.data.datasets.axon_sections import interior_target, load_item

__all__ = ["LoadAxonSectionsd"]


class LoadAxonSectionsd(MapTransform):
    """Replace an :func:`~cseg_monai.data.datasets.axon_sections.datalist` item by ``image``, ``label`` and ``ids``.

    ``image``: float32 ``(1, Z, Y, X)`` with the stored grey values (scale it in the config);
    ``label``: uint8 ``(1, Z, Y, X)`` interior of the profiles (the network's target); ``ids``:
    int64 ``(1, Z, Y, X)`` true 3D ids (what tracing is scored against). All are ``MetaTensor``
    whose ``filename_or_obj`` names the source (phantoms: ``phantom_SEED``) and, when the file
    states it, ``spacing`` the voxel size.
    """

    def __init__(self, image_key: Hashable = "image", label_key: Hashable = "label", ids_key: Hashable = "ids") -> None:
        super().__init__([image_key, label_key, ids_key], allow_missing_keys=True)
        self.image_key, self.label_key, self.ids_key = image_key, label_key, ids_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image, ids, spacing = load_item(d)
        name = f"phantom_{d['seed']}" if d.get("kind") == "phantom" else str(d["image"])
        meta: dict[str, Any] = {"filename_or_obj": name}
        if spacing is not None:
            meta["spacing"] = list(spacing)
        d[self.image_key] = MetaTensor(torch.from_numpy(image)[None], meta=dict(meta))
        d[self.label_key] = MetaTensor(torch.from_numpy(interior_target(ids))[None], meta=dict(meta))
        d[self.ids_key] = MetaTensor(torch.from_numpy(np.ascontiguousarray(ids))[None], meta=dict(meta))
        return d
