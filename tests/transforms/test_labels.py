"""MembraneMaskd: label conventions and bad values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from cseg_monai.transforms import MembraneMaskd


def _meta(array, name):
    return MetaTensor(torch.as_tensor(array), meta={"filename_or_obj": name})


def test_membrane_mask_isbi_convention():
    out = MembraneMaskd("label")({"label": _meta(np.array([[[0, 255], [255, 0]]]), "x.png")})
    assert out["label"].dtype == torch.float32
    assert out["label"].tolist() == [[[1.0, 0.0], [0.0, 1.0]]]
    assert out["label"].meta["filename_or_obj"] == "x.png"


def test_membrane_mask_other_convention_and_bad_values():
    conv = MembraneMaskd("label", membrane_values=(255,), allowed_values=(0, 255))
    assert conv({"label": torch.tensor([[[0, 255]]])})["label"].tolist() == [[[0.0, 1.0]]]
    with pytest.raises(ValueError, match=r"lab.png: label values \[7\]"):
        conv({"label": _meta(np.array([[[0, 7]]]), "lab.png")})
    with pytest.raises(ValueError, match="must be among allowed_values"):
        MembraneMaskd("label", membrane_values=(1,), allowed_values=(0, 255))
