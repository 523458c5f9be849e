"""Writing predictions: ``OUT/STEM_prob.tif`` and ``OUT/STEM_labels.tif`` for every input.

The output convention of every cseg-monai bundle: for an input ``STEM.ext``,
``STEM_prob.tif`` holds float32 probabilities, channel first ``(C, [Z,] Y, X)``, and
``STEM_labels.tif`` the uint8 segmentation ``([Z,] Y, X)``. Files are written to a
temporary name and renamed (see :mod:`cseg_monai.data.writers`).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from cseg_monai.data.writers import output_stem, write_tiff
from cseg_monai.transforms._meta import source_name

__all__ = ["output_stem", "SaveTiffd"]

class SaveTiffd(MapTransform):
    """Save ``data[key]`` as ``output_dir/STEM{suffix}.tif``; STEM comes from ``data[source_key]``.

    Args:
        keys: keys of the arrays to save.
        output_dir: folder of the outputs (created when missing).
        suffix: appended to the stem, e.g. ``"_prob"`` or ``"_labels"``.
        dtype: numpy dtype to write (``"float32"`` for probabilities, ``"uint8"`` for labels).
        squeeze_channel: drop a leading channel axis of size 1 (labels are written ``([Z,] Y, X)``).
        source_key: key whose file name gives STEM (default ``"image"``).
        allow_missing_keys: do not raise when a key is absent.

    Example:
        >>> import tempfile, torch, tifffile
        >>> out = tempfile.mkdtemp()
        >>> _ = SaveTiffd("pred", out, "_prob")({"pred": torch.rand(1, 4, 4), "image": "a.png"})
        >>> tifffile.imread(out + "/a_prob.tif").shape
        (1, 4, 4)
        >>> from monai.data import MetaTensor
        >>> image = MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "s.tif", "stem_suffix": "_t003"})
        >>> _ = SaveTiffd("pred", out, "_prob")({"pred": torch.rand(1, 4, 4), "image": image})
        >>> tifffile.imread(out + "/s_t003_prob.tif").shape
        (1, 4, 4)
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        suffix: str,
        dtype: str = "float32",
        squeeze_channel: bool = False,
        source_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.suffix = suffix
        self.dtype = np.dtype(dtype)
        self.squeeze_channel = squeeze_channel
        self.source_key = source_key

    def _stem(self, d: Mapping[Hashable, Any]) -> str:
        src = d.get(self.source_key)
        if isinstance(src, (str, os.PathLike)):
            return output_stem(src)
        name = source_name(d, self.source_key)
        if name.startswith("<"):
            raise ValueError(f"cannot name the output: {self.source_key!r} carries no file name")
        return output_stem(name)

    def _stem_suffix(self, d: Mapping[Hashable, Any]) -> str:
        """``meta["stem_suffix"]`` of the source (e.g. ``_t012`` for one time point of a
        time series), so items of one file do not overwrite each other's outputs."""
        meta = getattr(d.get(self.source_key), "meta", None) or {}
        suffix = meta.get("stem_suffix", "") if isinstance(meta, Mapping) else ""
        return suffix if isinstance(suffix, str) else ""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        stem = self._stem(d) + self._stem_suffix(d)
        for key in self.key_iterator(d):
            value = d[key]
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if self.squeeze_channel and arr.ndim > 1 and arr.shape[0] == 1:
                arr = arr[0]
            if np.issubdtype(self.dtype, np.integer):
                info = np.iinfo(self.dtype)
                if arr.size and (arr.min() < info.min or arr.max() > info.max):
                    raise ValueError(f"{key} values [{arr.min()}, {arr.max()}] do not fit {self.dtype}")
            write_tiff(self.output_dir / f"{stem}{self.suffix}.tif", np.ascontiguousarray(arr.astype(self.dtype)))
        return d
