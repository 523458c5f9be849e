"""MONAI dictionary transforms of the instance post-processing (probabilities -> instance ids).

:class:`BoundaryToInstancesd` runs :func:`~cseg_monai.postprocessing.instances.segment_instances`
(watershed + multicut or agglomeration) on predicted boundary (and foreground) probabilities,
for validation metrics and inference outputs.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from cseg_monai.postprocessing.instances import METHODS, check_filter_limits, segment_instances

__all__ = ["BoundaryToInstancesd"]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class BoundaryToInstancesd(MapTransform):
    """Instance ids from predicted boundary probabilities (channel ``boundary_channel`` of ``keys``).

    Writes ``output_key``: uint32 ids ``(1, Z, Y, X)`` (0 = background). With
    ``foreground_channel`` set, objects lying mostly where that channel's probability is below
    ``foreground_threshold`` are removed. The spacing comes from ``data[spacing_key]``, else
    from the probabilities' meta data (``spacing``, set by :class:`LoadInstancesd` and carried
    through the network by MONAI), else from ``spacing``.

    Args:
        keys: the probability key (channel first, after the sigmoid).
        method, threshold, sigma_seeds, min_supervoxel_size, beta, agglomeration_threshold,
        min_size, max_size, mask_watershed, min_major_axis, max_major_axis: of
        :func:`~cseg_monai.postprocessing.instances.segment_instances`
        (``mask_watershed`` uses the thresholded ``foreground_channel`` as the watershed mask).

    Example:
        >>> prob = np.zeros((2, 1, 40, 80), np.float32); prob[1, 0, 5:35, 5:75] = 1.0
        >>> prob[0, 0, :, 39:41] = 1.0  # a wall between two cells
        >>> out = BoundaryToInstancesd("pred", foreground_channel=1, min_size=20)({"pred": prob})
        >>> int(out["instances"].max())
        2
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        output_key: str = "instances",
        boundary_channel: int = 0,
        foreground_channel: int | None = None,
        foreground_threshold: float = 0.5,
        method: str = "multicut",
        threshold: float = 0.5,
        sigma_seeds: float = 2.0,
        min_supervoxel_size: int = 50,
        beta: float = 0.5,
        agglomeration_threshold: float = 0.5,
        min_size: int = 0,
        max_size: int | None = None,
        spacing: Sequence[float] | None = None,
        spacing_key: str = "spacing",
        mask_watershed: bool = False,
        min_major_axis: float = 0.0,
        max_major_axis: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        check_filter_limits(min_size, max_size, min_major_axis, max_major_axis)
        if mask_watershed and foreground_channel is None:
            raise ValueError("mask_watershed needs a foreground_channel")

        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        self.output_key, self.boundary_channel, self.foreground_channel = output_key, boundary_channel, foreground_channel
        self.foreground_threshold = float(foreground_threshold)
        self.kwargs = dict(
            method=method, threshold=threshold, sigma_seeds=sigma_seeds, min_supervoxel_size=min_supervoxel_size,
            beta=beta, agglomeration_threshold=agglomeration_threshold, min_size=min_size, max_size=max_size,
            mask_watershed=bool(mask_watershed), min_major_axis=min_major_axis, max_major_axis=max_major_axis,
        )  # fmt: skip
        self.spacing, self.spacing_key = spacing, spacing_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            prob = _numpy(d[key]).astype(np.float32)
            if prob.ndim != 4:
                raise ValueError(f"{key}: expected channel-first (C, Z, Y, X) probabilities, got shape {prob.shape}")
            boundary = np.clip(prob[self.boundary_channel], 0.0, 1.0)
            foreground = None
            if self.foreground_channel is not None:
                foreground = prob[self.foreground_channel] >= self.foreground_threshold
            meta = d[key].meta if isinstance(d[key], MetaTensor) else {}
            spacing = d.get(self.spacing_key) or meta.get("spacing") or self.spacing
            labels = segment_instances(boundary, spacing=spacing, foreground=foreground, **self.kwargs)
            meta = dict(d[key].meta) if isinstance(d[key], MetaTensor) else {}
            d[self.output_key] = MetaTensor(torch.from_numpy(labels[None].astype(np.int64)), meta=meta)
        return d
