"""MONAI dictionary transforms of axon tracing: interior probabilities -> per-section profiles -> 3D ids and tracks.

:class:`TraceSectionsd` turns a network's per-section probability that a pixel lies inside an
axon, ``(1, Z, Y, X)``, into profiles (:func:`~cseg_monai.postprocessing.section_tracking.section_profiles`)
and links them through the sections (:func:`~cseg_monai.postprocessing.section_tracking.trace_sections`).
:class:`SaveTracksd` writes the tracks table next to the other outputs.

Example:
    >>> prob = np.zeros((1, 3, 32, 32), np.float32); prob[0, :, 8:20, 8:20] = 0.9
    >>> out = TraceSectionsd("pred")({"pred": prob})
    >>> int(out["traced"].max()), len(out["traced_tracks"])
    (1, 3)
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from cseg_monai.data.writers import output_stem
from cseg_monai.postprocessing.section_tracking import LinkParams, read_anchors, section_profiles, trace_sections, write_tracks
from cseg_monai.transforms._meta import source_name

__all__ = ["SaveTracksd", "TraceSectionsd"]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _source_name(d: Mapping[Hashable, Any], key: str) -> str | None:
    """The file an item came from: the key's path, or its meta data's (None when unknown)."""
    value = d.get(key)
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    name = source_name(d, key)
    return None if name.startswith("<") else name


class TraceSectionsd(MapTransform):
    """Profiles per section from an interior probability, linked into 3D ids.

    Writes ``output_key``: ``(1, Z, Y, X)`` uint32 ids (0 background), and ``output_key +
    "_tracks"``: the tracks table (one dict per profile, :data:`~cseg_monai.postprocessing.section_tracking.TRACK_FIELDS`).

    Args:
        keys: the probability key, ``(1, Z, Y, X)`` after the sigmoid.
        output_key: where the ids go.
        threshold: interior above it.
        pixel_size: ``(Y, X)`` size of a pixel, in the units of the lengths below (default 1: pixels).
        smooth / erode / split_depth / min_area / dilate: :func:`section_profiles`' bilateral
            sigma, erosion radius, split depth (lengths), smallest profile (area) and growth of
            the profiles (length; the width of the border a network trained on interiors leaves out).
        link: the linking settings (:class:`LinkParams`); ``**changes`` replace its fields.
        anchors_dir: a folder of ``STEM_anchors.csv`` files (``section, y, x, id``); a volume
            without one is traced without anchors. STEM comes from ``source_key``'s file name.
        source_key: the key whose file names the volume (default ``"image"``).

    Raises:
        ValueError: probabilities that are not ``(1, Z, Y, X)``, bad settings.
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        output_key: str = "traced",
        threshold: float = 0.5,
        pixel_size: Sequence[float] | None = None,
        smooth: float | None = None,
        erode: float = 0.0,
        split_depth: float | None = None,
        min_area: float = 0.0,
        dilate: float = 0.0,
        link: LinkParams | None = None,
        anchors_dir: str | os.PathLike | None = None,
        source_key: str = "image",
        allow_missing_keys: bool = False,
        **changes: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        if link is not None and not isinstance(link, LinkParams):
            raise ValueError(f"link must be a LinkParams, got {type(link).__name__}")
        self.link = (link or LinkParams()).replace(**changes) if changes else (link or LinkParams())
        self.output_key, self.threshold = output_key, float(threshold)
        self.pixel_size = None if pixel_size is None else tuple(float(s) for s in pixel_size)
        self.smooth, self.erode, self.split_depth, self.min_area, self.dilate = smooth, float(erode), split_depth, float(min_area), float(dilate)
        self.anchors_dir = None if anchors_dir is None else Path(anchors_dir)
        self.source_key = source_key
        self._anchor_file: Path | None = None

    def _anchors(self, d: Mapping[Hashable, Any]) -> list[tuple[int, float, float, int]]:
        if self.anchors_dir is None:
            return []
        name = _source_name(d, self.source_key)
        if name is None:
            raise ValueError(f"anchors_dir is set but {self.source_key!r} carries no file name to find STEM_anchors.csv by")
        path = self.anchors_dir / f"{output_stem(name)}_anchors.csv"
        self._anchor_file = path if path.is_file() else None
        return read_anchors(path) if path.is_file() else []

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            prob = _numpy(d[key]).astype(np.float32)
            if prob.ndim != 4 or prob.shape[0] != 1:
                raise ValueError(f"{key}: expected (1, Z, Y, X) probabilities, got shape {prob.shape}")
            profiles = np.stack([
                section_profiles(p, self.threshold, self.pixel_size, self.smooth, self.erode, self.split_depth, self.min_area, self.dilate)
                for p in prob[0]
            ])  # fmt: skip
            anchors = self._anchors(d)
            try:
                ids, tracks = trace_sections(profiles, self.pixel_size, self.link, anchors)
            except ValueError as err:
                if anchors and "anchor" in str(err):  # name the file the bad anchor came from
                    raise ValueError(f"{self._anchor_file}: {err}") from None
                raise
            meta = dict(d[key].meta) if isinstance(d[key], MetaTensor) else {}
            d[self.output_key] = MetaTensor(torch.from_numpy(ids[None].astype(np.int64)), meta=meta)
            d[f"{self.output_key}_tracks"] = tracks
        return d


class SaveTracksd(MapTransform):
    """Write ``data[key]`` (a tracks table) as ``output_dir/STEM{suffix}.csv``, atomically; STEM from ``source_key``.

    Example:
        >>> import tempfile
        >>> out = tempfile.mkdtemp()
        >>> _ = SaveTracksd("traced_tracks", out)({"traced_tracks": [], "image": "/d/vol.tif"})
        >>> (Path(out) / "vol_tracks.csv").read_text().startswith("id,section")
        True
    """

    def __init__(self, keys: str | Sequence[str], output_dir: str | os.PathLike, suffix: str = "_tracks", source_key: str = "image",
                 allow_missing_keys: bool = False) -> None:  # fmt: skip
        super().__init__(keys, allow_missing_keys)
        self.output_dir, self.suffix, self.source_key = Path(output_dir), suffix, source_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        name = _source_name(d, self.source_key)
        if name is None:
            raise ValueError(f"cannot name the tracks file: {self.source_key!r} carries no file name")
        for key in self.key_iterator(d):
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_tracks(self.output_dir / f"{output_stem(name)}{self.suffix}.csv", d[key])
        return d
