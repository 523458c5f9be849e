"""SaveTiffd: output names, dtypes, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor

from cseg_monai.transforms import SaveTiffd


def _meta(array, name):
    return MetaTensor(torch.as_tensor(array), meta={"filename_or_obj": name})


def test_save_tiff_names_dtypes_and_atomicity(tmp_path):
    image = _meta(np.zeros((1, 5, 6)), "/data/img_3.png")
    prob = torch.rand(1, 5, 6)
    data = {"image": image, "pred": prob, "labels": (prob > 0.5).float()}
    SaveTiffd("pred", tmp_path, "_prob")(data)
    SaveTiffd("labels", tmp_path, "_labels", dtype="uint8", squeeze_channel=True)(data)
    p = tifffile.imread(tmp_path / "img_3_prob.tif")
    lab = tifffile.imread(tmp_path / "img_3_labels.tif")
    assert p.dtype == np.float32 and p.shape == (1, 5, 6)
    np.testing.assert_allclose(p, prob.numpy())
    assert lab.dtype == np.uint8 and lab.shape == (5, 6)
    # a value that does not fit uint8 is refused, and the existing output stays intact
    before = (tmp_path / "img_3_labels.tif").read_bytes()
    with pytest.raises(ValueError, match="do not fit uint8"):
        SaveTiffd("labels", tmp_path, "_labels", dtype="uint8")({"image": image, "labels": torch.full((1, 5, 6), 300)})
    assert (tmp_path / "img_3_labels.tif").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img_3_labels.tif", "img_3_prob.tif"]
