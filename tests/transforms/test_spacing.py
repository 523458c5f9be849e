"""RescaleToSpacingd / RescaleToInputd: the model's voxel size in, the input's grid out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from cseg_monai.transforms import RescaleToInputd, RescaleToSpacingd


def _image(shape=(1, 6, 40, 50), spacing=None):
    meta = {"filename_or_obj": "vol.tif"}
    if spacing is not None:
        meta["spacing"] = np.asarray(spacing)
    return MetaTensor(torch.rand(*shape), meta=meta)


@pytest.mark.parametrize(
    "user, file, default, source, shape",
    [
        (None, [1.0, 0.2, 0.2], None, "file", (12, 80, 100)),
        ([0.5, 0.1, 0.1], [1.0, 0.2, 0.2], None, "user", (6, 40, 50)),  # the user's wins: the model's own size
        (None, None, [1.0, 0.2, 0.2], "default", (12, 80, 100)),
        (None, None, None, "unknown", (6, 40, 50)),
        (None, [0.52, 0.105, 0.095], None, "file", (6, 40, 50)),  # within 10 %: left alone
    ],
)
def test_source_order_and_shapes(user, file, default, source, shape):
    t = RescaleToSpacingd("image", model_spacing=[0.5, 0.1, 0.1], spacing=user, default_spacing=default)
    out = t({"image": _image(spacing=file)})["image"]
    assert tuple(out.shape[1:]) == shape and out.meta["spacing_source"] == source
    assert list(out.meta["input_shape"]) == [6, 40, 50]
    if source != "unknown":
        expected = [0.5, 0.1, 0.1] if shape != (6, 40, 50) else (user or file or default)
        assert np.allclose(np.asarray(out.meta["spacing"]), expected)
    else:
        assert "spacing" not in out.meta


def test_round_trip_keeps_probabilities_and_ids():
    image = _image(shape=(1, 4, 30, 30), spacing=[2.0, 0.4, 0.4])
    d = RescaleToSpacingd("image", model_spacing=[1.0, 0.2, 0.2])({"image": image})
    assert tuple(d["image"].shape) == (1, 8, 60, 60)
    ids = torch.zeros(1, 8, 60, 60, dtype=torch.int64)
    ids[0, 2:6, 10:30, 10:30] = 7
    d["pred"] = MetaTensor(torch.full((2, 8, 60, 60), 0.25), meta=dict(d["image"].meta))
    d["instances"] = MetaTensor(ids, meta=dict(d["image"].meta))
    back = RescaleToInputd(["pred", "instances"], reference_key="pred", modes=["linear", "nearest"])(d)
    assert tuple(back["pred"].shape) == (2, 4, 30, 30) and torch.allclose(back["pred"], torch.tensor(0.25))
    assert back["instances"].dtype == torch.int64 and set(back["instances"].unique().tolist()) == {0, 7}
    assert np.allclose(np.asarray(back["pred"].meta["spacing"]), [2.0, 0.4, 0.4])


def test_nothing_recorded_nothing_done():
    d = {"pred": MetaTensor(torch.rand(2, 3, 4, 5))}
    assert RescaleToInputd("pred")(d)["pred"].shape == (2, 3, 4, 5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model_spacing": [0.5, 0.0, 0.1]}, r"model_spacing \[0.5, 0.0, 0.1\]: spacing must be 3 positive numbers"),
        ({"model_spacing": [0.5, 0.1, 0.1], "spacing": [float("nan"), 1, 1]}, r"--spacing .*: spacing must be 3 positive numbers"),
        ({"model_spacing": [0.5, 0.1, 0.1], "tolerance": 1.5}, r"tolerance must be in \[0, 1\)"),
    ],
)
def test_bad_settings_are_refused_up_front(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RescaleToSpacingd("image", **kwargs)


def test_a_file_with_a_bad_voxel_size_is_named():
    t = RescaleToSpacingd("image", model_spacing=[0.5, 0.1, 0.1])
    with pytest.raises(ValueError, match=r"vol.tif: its voxel size \[50.0, 0.1, 0.1\]: anisotropy 500 is above 20"):
        t({"image": _image(spacing=[50.0, 0.1, 0.1])})
    with pytest.raises(ValueError, match=r"vol.tif: its voxel size \[1.0, 0.1\]: spacing must be 3 positive numbers"):
        t({"image": _image(spacing=[1.0, 0.1])})
    with pytest.raises(ValueError, match=r"modes must be 'linear' or 'nearest'"):
        RescaleToInputd(["pred", "instances"], modes=["linear"])
