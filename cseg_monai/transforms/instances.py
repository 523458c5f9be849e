"""Transforms for 3D instance segmentation: load items, Poisson noise.

* :class:`LoadInstancesd`: an item of :mod:`cseg_monai.data.datasets.instances` -> ``image``
  (float32 ``(1, Z, Y, X)``, raw values), ``label`` (int64 instance ids ``(1, Z, Y, X)``) and,
  when the data set knows it, ``spacing`` (a list, also in both tensors' meta data).
* :class:`RandPoissonNoised`: shot noise for images scaled to [0, 1].

The inverse direction, probabilities -> instance ids, is post-processing:
:class:`cseg_monai.postprocessing.BoundaryToInstancesd`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform

from cseg_monai.data.datasets.instances import load_item

__all__ = ["LoadInstancesd", "RandPoissonNoised"]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class LoadInstancesd(MapTransform):
    """Load an instance data set item (``kind``, ``image``, ``label``, optional ``z`` / ``t``).

    Example:
        >>> import tempfile, pathlib
        >>> from cseg_monai.data.writers import write_tiff
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = write_tiff(root / "images" / "v.tif", np.zeros((3, 8, 8), np.uint8))
        >>> _ = write_tiff(root / "labels" / "v.tif", np.ones((3, 8, 8), np.uint16))
        >>> from cseg_monai.data.datasets.instances import datalist
        >>> d = LoadInstancesd()(datalist("folder", root)[0])
        >>> tuple(d["image"].shape), d["label"].dtype, "spacing" in d
        ((1, 3, 8, 8), torch.int64, False)
    """

    def __init__(self, image_key: str = "image", label_key: str = "label", spacing_key: str = "spacing") -> None:
        super().__init__([image_key, label_key])
        self.image_key, self.label_key, self.spacing_key = image_key, label_key, spacing_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image, labels, spacing = load_item(d)
        name = str(d[self.image_key]).split("::")[0]
        stem_suffix = f"_t{int(d['t']):03d}" if "t" in d else ""
        meta = {"filename_or_obj": name, "kind": d.get("kind", "folder"), "stem_suffix": stem_suffix}
        if spacing is not None:  # absent rather than None: batches of items cannot collate None
            meta["spacing"] = list(spacing)
            d[self.spacing_key] = list(spacing)
        d[self.image_key] = MetaTensor(torch.from_numpy(image.astype(np.float32)), meta=dict(meta))
        d[self.label_key] = MetaTensor(torch.from_numpy(labels[None]), meta=dict(meta))
        return d


class RandPoissonNoised(RandomizableTransform, MapTransform):
    """Poisson (shot) noise on images in [0, 1]: ``Poisson(x * photons) / photons``.

    ``photons`` is drawn uniformly from ``photons_range`` per call: fewer photons, more noise.

    Example:
        >>> t = RandPoissonNoised("image", prob=1.0, photons_range=(20, 20))
        >>> _ = t.set_random_state(0)
        >>> out = t({"image": np.full((1, 64, 64), 0.5, np.float32)})["image"]
        >>> round(float(out.mean()), 1), bool(out.std() > 0.1)
        (0.5, True)
    """

    def __init__(
        self, keys: str | Sequence[str], prob: float = 0.1, photons_range: tuple[float, float] = (20.0, 200.0),
        allow_missing_keys: bool = False,
    ) -> None:  # fmt: skip
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        lo, hi = (float(v) for v in photons_range)
        if not 0 < lo <= hi:
            raise ValueError(f"photons_range must satisfy 0 < low <= high, got {photons_range}")
        self.photons_range = (lo, hi)
        self._photons = lo

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._photons = float(self.R.uniform(*self.photons_range))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = d[key]
            arr = _numpy(img).astype(np.float64)
            noisy = self.R.poisson(np.clip(arr, 0, None) * self._photons) / self._photons
            out = noisy.astype(np.float32)
            d[key] = MetaTensor(torch.from_numpy(out), meta=dict(img.meta)) if isinstance(img, MetaTensor) else (
                torch.from_numpy(out) if isinstance(img, torch.Tensor) else out
            )  # fmt: skip
        return d
