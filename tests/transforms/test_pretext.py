"""Centre-region masking: the region is blanked, the target is exactly what was there, nothing else moves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cseg_monai.transforms import MaskCentreRegiond, centre_region_slices, paste_centre_region


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
