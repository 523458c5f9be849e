"""Synaptic cleft items: load them (:class:`LoadCleftd`), and turn a probability into cleft ids (:class:`CleftComponentsd`).

Example:
    >>> from cseg_monai.data.datasets.synaptic_clefts import datalist
    >>> d = LoadCleftd()(datalist("phantom", shape=(4, 64, 64))[0])
    >>> tuple(d["image"].shape), d["label"].dtype, d["image"].meta["voxel_size_nm"]
    ((1, 4, 64, 64), torch.uint8, [46.0, 4.6, 4.6])
    >>> ids = CleftComponentsd("pred", threshold=0.5)({"pred": d["label"].float()})["pred"]
    >>> int(ids.max()) >= 1
    True
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from scipy import ndimage

from cseg_monai.data.datasets.synaptic_clefts import load_item

__all__ = ["LoadCleftd", "CleftComponentsd", "cleft_components"]


class LoadCleftd(MapTransform):
    """Replace a :func:`~cseg_monai.data.datasets.synaptic_clefts.datalist` item by ``image`` and ``label``.

    ``image``: float32 ``(1, Z, Y, X)`` with the stored grey values (scale it in the config);
    ``label``: uint8 ``(1, Z, Y, X)`` cleft mask. Both are ``MetaTensor`` whose ``filename_or_obj``
    names the source (phantoms: ``phantom_SEED``; VNC: ``ROOT/sections_AA-BB``; else the image file) and, when known, ``voxel_size_nm`` the voxel size.

    Args:
        image_key / label_key: where the loaded arrays go.
    """

    def __init__(self, image_key: Hashable = "image", label_key: Hashable = "label") -> None:
        super().__init__([image_key, label_key], allow_missing_keys=True)
        self.image_key, self.label_key = image_key, label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image, clefts, voxel = load_item(d)
        kind = d.get("kind")
        if kind == "phantom":
            name = f"phantom_{d['seed']}"
        elif kind == "drosophila_vnc":
            sections = d["sections"]
            name = f"{d['image']}/sections_{sections[0]:02d}-{sections[-1]:02d}"
        else:
            name = d.get("image")
        meta: dict[str, Any] = {"filename_or_obj": str(name)}
        if voxel is not None:
            meta["voxel_size_nm"] = list(voxel)
        d[self.image_key] = MetaTensor(torch.from_numpy(image.astype(np.float32))[None], meta=dict(meta))
        d[self.label_key] = MetaTensor(torch.from_numpy(clefts)[None], meta=dict(meta))
        return d


def cleft_components(prob: np.ndarray, threshold: float = 0.5, min_size: int = 0) -> np.ndarray:
    """26-connected components of ``prob > threshold`` as ids 1..N (uint32), components under ``min_size`` voxels dropped.

    Example:
        >>> p = np.zeros((1, 3, 9)); p[0, 1, 1:3] = 0.9; p[0, 1, 6] = 0.8
        >>> cleft_components(p)[0, 1].tolist(), cleft_components(p, min_size=2)[0, 1].tolist()
        ([0, 1, 1, 0, 0, 0, 2, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0, 0])
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    mask = np.asarray(prob) > threshold
    ids, n = ndimage.label(mask, np.ones((3,) * mask.ndim, bool))
    if min_size > 1 and n:
        sizes = np.bincount(ids.ravel())
        keep = sizes >= min_size
        keep[0] = False
        lut = np.zeros(n + 1, np.uint32)
        lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
        return lut[ids]
    return ids.astype(np.uint32)


class CleftComponentsd(MapTransform):
    """Cleft probability ``(1, Z, Y, X)`` -> cleft ids (:func:`cleft_components`), written to ``names`` (default in place).

    Args:
        keys: the probability keys.
        threshold: probability above which a voxel is cleft.
        min_size: smallest cleft kept, in voxels.
        names: output keys, one per key (default: replace the key).
    """

    def __init__(self, keys: KeysCollection, threshold: float = 0.5, min_size: int = 0, names: KeysCollection | None = None) -> None:
        super().__init__(keys)
        cleft_components(np.zeros(1), threshold)  # validates the threshold
        if int(min_size) < 0:
            raise ValueError(f"min_size must be >= 0 voxels, got {min_size}")
        self.threshold, self.min_size = float(threshold), int(min_size)
        self.names = list(self.keys) if names is None else ([names] if isinstance(names, str) else list(names))
        if len(self.names) != len(self.keys):
            raise ValueError(f"names {self.names} must name one output per key {list(self.keys)}")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, name in zip(self.keys, self.names):
            x = d[key]
            arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            ids = torch.from_numpy(cleft_components(arr, self.threshold, self.min_size).astype(np.int32))
            d[name] = MetaTensor(ids, meta=dict(x.meta)) if isinstance(x, MetaTensor) else ids
        return d
