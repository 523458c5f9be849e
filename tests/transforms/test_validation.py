"""ValidateImaged / ValidateSameShaped: one clear error naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from cseg_monai.transforms import ValidateImaged, ValidateSameShaped


def _meta(array, name):
    return MetaTensor(torch.as_tensor(array), meta={"filename_or_obj": name})


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


def test_a_2d_image_becomes_a_single_plane_volume_when_asked():
    image = MetaTensor(torch.rand(1, 6, 8), meta={"filename_or_obj": "dsb.tif", "spacing": np.asarray([0.3, 0.3])})
    out = ValidateImaged("image", spatial_dims=3, single_plane_2d=True)({"image": image})["image"]
    assert tuple(out.shape) == (1, 1, 6, 8) and list(out.meta["spacing"]) == [0.3, 0.3, 0.3]
    with pytest.raises(ValueError, match="dsb.tif: expected 3 spatial axes, got 2"):
        ValidateImaged("image", spatial_dims=3)({"image": image})


def test_one_channel_of_a_two_channel_stack_is_chosen():
    stack = _meta(np.stack([np.zeros((3, 4, 4)), np.arange(48.0).reshape(3, 4, 4)]), "two.tif")
    out = ValidateImaged("image", num_channels=1, spatial_dims=3, channel=1)({"image": stack})["image"]
    assert tuple(out.shape) == (1, 3, 4, 4) and torch.equal(out[0], stack[1]) and out.meta["filename_or_obj"] == "two.tif"
    with pytest.raises(ValueError, match="two.tif: expected a grey image with 1 channel, got 2"):  # not chosen: refused
        ValidateImaged("image", num_channels=1, spatial_dims=3)({"image": stack})
    with pytest.raises(ValueError, match=r"two.tif: channel 2 does not exist .* channels 0-1"):
        ValidateImaged("image", num_channels=1, channel=2)({"image": stack})
    with pytest.raises(ValueError, match="channel must be a channel index"):
        ValidateImaged("image", channel=-1)
