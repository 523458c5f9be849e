"""Label conversions: data-set label conventions -> training targets."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from cseg_monai.transforms._meta import source_name

__all__ = ["MembraneMaskd"]


class MembraneMaskd(MapTransform):
    """Turn a label image into a binary membrane mask (1 = membrane, 0 = other), checking its values.

    Data sets disagree on how membranes are stored: ISBI 2012 uses 0 = membrane and
    255 = interior, others 255 = membrane. Values outside ``allowed_values`` raise an error
    that names the file, so a wrong data set or a lossy re-encoding is caught early.

    Args:
        keys: keys of the label images.
        membrane_values: label values that mean membrane. Default ``(0,)`` (ISBI 2012).
        allowed_values: every value the label may hold; ``None`` accepts anything.
            Default ``(0, 255)``.
        dtype: output dtype, default ``torch.float32`` (what the losses expect).
        allow_missing_keys: do not raise when a key is absent.

    Example:
        >>> import torch
        >>> out = MembraneMaskd("label")({"label": torch.tensor([[[0, 255], [255, 0]]])})
        >>> out["label"].tolist()
        [[[1.0, 0.0], [0.0, 1.0]]]
    """

    def __init__(
        self,
        keys: KeysCollection,
        membrane_values: Sequence[int] = (0,),
        allowed_values: Sequence[int] | None = (0, 255),
        dtype: torch.dtype = torch.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(membrane_values) == 0:
            raise ValueError("membrane_values must name at least one label value")
        if allowed_values is not None and not set(membrane_values) <= set(allowed_values):
            raise ValueError(f"membrane_values {list(membrane_values)} must be among allowed_values {list(allowed_values)}")
        self.membrane_values = tuple(int(v) for v in membrane_values)
        self.allowed_values = None if allowed_values is None else tuple(int(v) for v in allowed_values)
        self.dtype = dtype

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            values = torch.unique(torch.as_tensor(label)).cpu().numpy()
            if self.allowed_values is not None:
                bad = values[~np.isin(values, self.allowed_values)]
                if bad.size:
                    shown = bad[:10]
                    if np.all(np.mod(shown, 1) == 0):
                        shown = shown.astype(np.int64)
                    raise ValueError(
                        f"{source_name(d, key)}: label values {shown.tolist()} are not among the expected "
                        f"{list(self.allowed_values)} (membrane = {list(self.membrane_values)})"
                    )
            mask = torch.zeros_like(torch.as_tensor(label), dtype=torch.bool)
            for v in self.membrane_values:
                mask |= torch.as_tensor(label) == v
            out = mask.to(self.dtype)
            if hasattr(label, "copy_meta_from"):
                out = type(label)(out, meta=label.meta, applied_operations=label.applied_operations)
            d[key] = out
        return d
