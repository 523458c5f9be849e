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


def _nuclei(radius, seed=0, shape=(12, 96, 96)):
    from cseg_monai.data.nuclei_phantom import make_nuclei_phantom

    image, labels = make_nuclei_phantom(shape, n_nuclei=10, radius_range=(radius, radius * 1.1), spacing=(2.0, 1.0, 1.0), seed=seed)
    return MetaTensor(torch.from_numpy(image[None].astype(np.float32)), meta={"filename_or_obj": "nuclei.tif"}), labels


def test_object_size_brings_small_and_large_nuclei_to_one_size():
    """Nuclei of radius 5 and of radius 10: after the zoom both are measured near the model's size."""
    from cseg_monai.transforms.object_size import estimate_object_size

    t = RescaleToSpacingd("image", model_spacing=None, object_size=12.0, tolerance=0.05)
    sizes = []
    for radius in (5.0, 10.0):
        out = t({"image": _nuclei(radius)[0]})["image"]
        assert out.meta["object_size_source"] == "estimated" and out.shape[1] == 12  # no voxel size: z left alone
        sizes.append(estimate_object_size(out[0].numpy()).chord_yx)
    assert all(abs(s / 12.0 - 1) < 0.25 for s in sizes), sizes


def test_object_size_with_a_voxel_size_zooms_every_axis_and_labels_follow():
    image, labels = _nuclei(10.0)
    image.meta["spacing"] = np.asarray([2.0, 1.0, 1.0])
    d = RescaleToSpacingd("image", model_spacing=[2.0, 1.0, 1.0], object_size=6.0, nearest_keys=["label"])(
        {"image": image, "label": torch.from_numpy(labels[None].astype(np.int64))}
    )
    zoom = d["image"].meta["object_zoom"]
    assert 0.3 < zoom < 0.8
    assert d["image"].shape[1:] == d["label"].shape[1:] and d["image"].shape[1] == round(12 * zoom)
    assert d["label"].dtype == torch.int64 and set(d["label"].unique().tolist()) <= set(np.unique(labels).tolist())
    assert np.allclose(d["image"].meta["spacing"][1:], 1.0)  # the model frame's unit: its in-plane voxel
    assert list(d["image"].meta["input_shape"]) == [12, 96, 96]


def test_zoom_key_scales_on_top_and_constant_images_are_named():
    image, _ = _nuclei(8.0)
    t = RescaleToSpacingd("image", model_spacing=None, zoom_key="zoom")
    assert t({"image": image, "zoom": 2.0})["image"].shape[2] == 192
    flat = MetaTensor(torch.full((1, 4, 20, 20), 3.0), meta={"filename_or_obj": "flat.tif"})
    with pytest.raises(ValueError, match="flat.tif: the image is constant"):
        RescaleToSpacingd("image", model_spacing=None, object_size=10.0)({"image": flat})
    with pytest.raises(ValueError, match="object_size must be a finite number"):
        RescaleToSpacingd("image", model_spacing=None, object_size=0.0)


def test_a_user_given_object_diameter_replaces_the_estimate():
    """Diameter 20 voxels (balls: mean chord 13.3) for a model of chord 10: zoom 0.75, whatever the image shows."""
    image, _ = _nuclei(5.0)  # objects of diameter about 10 voxels: the estimate alone would zoom up
    d = RescaleToSpacingd("image", model_spacing=None, object_size=10.0, object_diameter=20.0)({"image": image})["image"]
    assert d.meta["object_size_source"] == "user" and d.meta["object_zoom"] == pytest.approx(0.75)
    assert d.shape[2:] == (72, 72)
    plane = MetaTensor(image[:, :1].clone(), meta=dict(image.meta))  # one plane: a disc, chord pi/4 of the diameter
    d = RescaleToSpacingd("image", model_spacing=None, object_size=10.0, object_diameter=20.0)({"image": plane})["image"]
    assert d.meta["object_zoom"] == pytest.approx(10.0 / (20.0 * np.pi / 4))
    for bad in (0.0, -3.0, float("nan"), True):
        with pytest.raises(ValueError, match="object_diameter must be a finite number of voxels"):
            RescaleToSpacingd("image", model_spacing=None, object_size=10.0, object_diameter=bad)
    with pytest.raises(ValueError, match="object_diameter needs a model that knows its object size"):
        RescaleToSpacingd("image", model_spacing=[1.0, 1.0, 1.0], object_diameter=20.0)
