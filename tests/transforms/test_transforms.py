"""Label conversion, input checks and the TIFF output writer."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor

from cseg_monai.transforms import MembraneMaskd, SaveTiffd, ValidateImaged, ValidateSameShaped, output_stem


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


def test_validate_image_checks():
    check = ValidateImaged("image", num_channels=1, spatial_dims=2)
    check({"image": torch.rand(1, 4, 4)})
    with pytest.raises(ValueError, match="a.tif: expected 2 spatial axes, got 3"):
        check({"image": _meta(np.random.rand(1, 2, 4, 4), "a.tif")})
    with pytest.raises(ValueError, match="empty image"):
        check({"image": torch.zeros(1, 0, 4)})
    with pytest.raises(ValueError, match="constant"):
        check({"image": torch.zeros(1, 4, 4)})
    bad = torch.rand(1, 4, 4)
    bad[0, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        check({"image": bad})
    ValidateImaged("label", allow_constant=True)({"label": torch.zeros(1, 4, 4)})


def test_validate_same_shape():
    ValidateSameShaped(["image", "label"])({"image": torch.zeros(1, 4, 4), "label": torch.zeros(1, 4, 4)})
    with pytest.raises(ValueError, match="i.png is \\(4, 4\\) but l.png is \\(4, 5\\)"):
        ValidateSameShaped(["image", "label"])(
            {"image": _meta(np.zeros((1, 4, 4)), "i.png"), "label": _meta(np.zeros((1, 4, 5)), "l.png")}
        )


def test_output_stem():
    assert output_stem("/a/b/slice_07.png") == "slice_07"
    assert output_stem("vol.nii.gz") == "vol"
    assert output_stem("c.ome.tif") == "c"
    assert output_stem("d.h5::volumes/raw") == "d"


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
