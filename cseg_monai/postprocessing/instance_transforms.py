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

from cseg_monai.common.checks import check_spacing
from cseg_monai.postprocessing.instance_params import InstanceParams
from cseg_monai.postprocessing.instances import segment_instances

__all__ = ["BoundaryToInstancesd"]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class BoundaryToInstancesd(MapTransform):
    """Instance ids from predicted boundary probabilities (channel ``boundary_channel`` of ``keys``).

    Writes ``output_key``: uint32 ids ``(1, Z, Y, X)`` (0 = background). With
    ``foreground_channel`` set, objects lying mostly where that channel's probability is below
    ``params.foreground_threshold`` are removed (and with ``params.mask_watershed`` the
    watershed floods only the foreground). The voxel size comes from ``data[spacing_key]``,
    else from the probabilities' meta data (``spacing``, set by :class:`LoadInstancesd` and
    carried through the network by MONAI), else from ``spacing``: the first one that is set.

    Args:
        keys: the probability key (channel first, after the sigmoid).
        params: the post-processing settings,
            :class:`~cseg_monai.postprocessing.instance_params.InstanceParams` (default
            ``InstanceParams()``); a bundle config builds one as ``@instance_params``.
        output_key: where the ids go.
        boundary_channel, foreground_channel: channels of ``keys`` (``foreground_channel``
            None: no foreground).
        spacing, spacing_key: the voxel size's fallback and key, as above.
        **changes: fields of ``params`` to replace (``min_size=30``), validated the same way.

    Example:
        >>> prob = np.zeros((2, 1, 40, 80), np.float32); prob[1, 0, 5:35, 5:75] = 1.0
        >>> prob[0, 0, :, 39:41] = 1.0  # a wall between two cells
        >>> out = BoundaryToInstancesd("pred", InstanceParams(min_size=20), foreground_channel=1)({"pred": prob})
        >>> int(out["instances"].max())
        2
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        params: InstanceParams | None = None,
        output_key: str = "instances",
        boundary_channel: int = 0,
        foreground_channel: int | None = None,
        spacing: Sequence[float] | None = None,
        spacing_key: str = "spacing",
        allow_missing_keys: bool = False,
        **changes: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if params is not None and not isinstance(params, InstanceParams):
            raise ValueError(f"params must be an InstanceParams, got {type(params).__name__}")
        self.params = params or InstanceParams()
        if changes:
            InstanceParams.check_names(changes, "BoundaryToInstancesd")
            self.params = self.params.replace(**changes)
        if self.params.mask_watershed and foreground_channel is None:
            raise ValueError("mask_watershed needs a foreground_channel")
        self.output_key, self.boundary_channel, self.foreground_channel = output_key, boundary_channel, foreground_channel
        self.spacing = None if spacing is None else check_spacing(spacing, len(spacing) if hasattr(spacing, "__len__") else 1, "spacing")
        self.spacing_key = spacing_key

    def _spacing(self, d: Mapping[Hashable, Any], meta: Mapping, ndim: int) -> list[float] | None:
        source = str(meta.get("filename_or_obj") or "the input")
        for value, name in ((d.get(self.spacing_key), self.spacing_key), (meta.get("spacing"), f"{source}: its voxel size"), (self.spacing, "spacing")):
            if value is not None:
                return check_spacing(value, ndim, name)
        return None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            prob = _numpy(d[key]).astype(np.float32)
            if prob.ndim != 4:
                raise ValueError(f"{key}: expected channel-first (C, Z, Y, X) probabilities, got shape {prob.shape}")
            boundary = np.clip(prob[self.boundary_channel], 0.0, 1.0)
            foreground = None
            if self.foreground_channel is not None:
                foreground = prob[self.foreground_channel] >= self.params.foreground_threshold
            meta = dict(d[key].meta) if isinstance(d[key], MetaTensor) else {}
            labels = segment_instances(boundary, self.params, spacing=self._spacing(d, meta, boundary.ndim), foreground=foreground)
            d[self.output_key] = MetaTensor(torch.from_numpy(labels[None].astype(np.int64)), meta=meta)
        return d
