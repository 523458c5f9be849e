"""Centre-region masking: the region is blanked, the target is exactly what was there, nothing else moves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cseg_monai.transforms import MaskCentreRegiond, MaskCubesd, PixProViewsd, centre_region_slices, paste_centre_region


@pytest.mark.parametrize("shape, radius", [((1, 102, 102), 1), ((1, 9, 32, 32), 0), ((2, 7, 7), 3)])
def test_mask_and_target_round_trip(shape, radius):
    patch = np.random.default_rng(0).random(shape).astype(np.float32)
    d = MaskCentreRegiond("image", radius=radius)({"image": patch})
    region = (slice(None), *centre_region_slices(shape[1:], radius))
    assert (d["image"][region] == 0).all()
    outside = np.ones(shape, bool)
    outside[region] = False
    assert np.array_equal(d["image"][outside], patch[outside]), "only the region may change"
    assert d["label"].shape == (shape[0] * (2 * radius + 1) ** (len(shape) - 1),) + (1,) * (len(shape) - 1)
    assert np.array_equal(paste_centre_region(d["image"], d["label"], radius), patch)
    assert np.array_equal(patch, np.random.default_rng(0).random(shape).astype(np.float32)), "the input is not modified"


def test_patch_target_and_tensors():
    patch = torch.rand(1, 11, 11)
    d = MaskCentreRegiond("image", radius=None, target="patch")({"image": patch})
    assert torch.equal(d["image"], patch) and torch.equal(d["label"], patch)
    d = MaskCentreRegiond("image", radius=2, target="patch", fill=0.5)({"image": patch})
    assert torch.equal(d["label"], patch) and (d["image"][:, 3:8, 3:8] == 0.5).all()


def test_the_centre_is_the_voxel_a_classifier_labels():
    assert centre_region_slices((8, 5), 0) == (slice(4, 5), slice(2, 3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="target 'centre' needs a radius"):
        MaskCentreRegiond("image", radius=None)
    with pytest.raises(ValueError, match="target must be one of"):
        MaskCentreRegiond("image", target="all")
    with pytest.raises(ValueError, match="radius must be a whole number >= 0 or None"):
        MaskCentreRegiond("image", radius=-1)
    with pytest.raises(ValueError, match="does not fit a patch of \\(4, 4\\)"):
        MaskCentreRegiond("image", radius=2)({"image": np.zeros((1, 4, 4))})
    with pytest.raises(ValueError, match="4 values for a centre region of shape \\(1, 3, 3\\)"):
        paste_centre_region(np.zeros((1, 5, 5)), np.zeros(4), 1)


@pytest.mark.parametrize("shape", [(1, 64, 64), (2, 16, 32, 32)])
def test_cube_dropout_hides_exactly_the_mask_and_keeps_the_original(shape):
    patch = torch.as_tensor(np.random.default_rng(1).random(shape).astype(np.float32) + 1.0)  # no zero anywhere
    t = MaskCubesd("image", holes=3, max_holes=6, spatial_size=4, max_spatial_size=10, fill_value=0.0)
    t.set_random_state(3)
    d = t({"image": patch})
    target, mask = d["label"][: shape[0]], d["label"][shape[0] :]
    assert tuple(d["label"].shape) == (shape[0] + 1, *shape[1:]) and torch.equal(target, patch)
    hidden = mask[0] > 0
    assert 0 < hidden.float().mean() < 0.9
    assert (d["image"][:, hidden] == 0).all() and torch.equal(d["image"][:, ~hidden], patch[:, ~hidden]), "zero exactly in the cubes"


def test_cube_shuffle_permutes_inside_the_cubes_only():
    patch = torch.arange(48 * 48, dtype=torch.float32).reshape(1, 48, 48)
    t = MaskCubesd("image", method="shuffle", holes=4, spatial_size=8)
    t.set_random_state(0)
    d = t({"image": patch})
    hidden = d["label"][1] > 0
    assert torch.equal(d["image"][:, ~hidden], patch[:, ~hidden])
    assert torch.equal(torch.sort(d["image"][:, hidden]).values, torch.sort(patch[:, hidden]).values), "the same values, moved"
    assert (d["image"][:, hidden] != patch[:, hidden]).float().mean() > 0.9


def test_cubes_change_per_call_unless_seeded():
    patch = torch.ones(1, 64, 64)
    free = MaskCubesd("image", holes=4, spatial_size=8)
    free.set_random_state(0)
    assert not torch.equal(free({"image": patch})["label"][1], free({"image": patch})["label"][1])
    fixed = MaskCubesd("image", holes=4, spatial_size=8, seed=7)
    assert torch.equal(fixed({"image": patch})["label"][1], fixed({"image": patch * 2})["label"][1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "blur"}, "method must be one of"),
        ({"holes": 0}, "holes must be a whole number >= 1"),
        ({"spatial_size": [8, 0]}, "spatial_size must be"),
        ({"holes": 4, "max_holes": 2}, "max_holes None or >= holes"),
        ({"fill_value": float("nan")}, "fill_value must be a finite number"),
        ({"seed": -1}, "seed must be None or a whole number"),
    ],
)
def test_cube_mask_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MaskCubesd("image", **kwargs)
    with pytest.raises(ValueError, match="one patch key"):
        MaskCubesd(["image", "other"])


def test_pixpro_views_carry_the_original_coordinates_of_their_pixels():
    ys, xs = np.meshgrid(np.arange(256.0), np.arange(256.0), indexing="ij")
    ramp = (0.3 * ys + 0.7 * xs).astype(np.float32)[None]  # a linear image: its value names the pixel
    t = PixProViewsd("image", view_size=(64, 64), intensity=False)
    t.set_random_state(5)
    for _ in range(5):
        d = t({"image": ramp})
        for view, coords in ((d["image"][:1], d["label"][:2]), (d["image"][1:], d["label"][2:])):
            assert torch.allclose(view[0], 0.3 * coords[0] + 0.7 * coords[1], atol=1e-3), "through crop, resize, flips and rotation"
        (a, b) = d["label"][:2].flatten(1), d["label"][2:].flatten(1)
        lo, hi = torch.maximum(a.amin(1), b.amin(1)), torch.minimum(a.amax(1), b.amax(1))
        assert (hi > lo).all(), "the two views overlap"


def test_pixpro_views_are_fixed_by_a_seed_and_checked():
    image = np.random.default_rng(0).random((1, 96, 96)).astype(np.float32)
    t = PixProViewsd("image", view_size=(32, 32), seed=3)
    assert torch.equal(t({"image": image})["image"], t({"image": image})["image"])
    with pytest.raises(ValueError, match="a 2D view_size for an image of shape"):
        t({"image": image[None]})
    with pytest.raises(ValueError, match="scale must be"):
        PixProViewsd("image", scale=(0.5, 1.5))
