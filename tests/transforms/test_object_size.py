"""estimate_object_size: the mean in-plane chord follows the objects' size, on any dtype."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.data.nuclei_phantom import make_nuclei_phantom
from cseg_monai.transforms.object_size import estimate_object_size, mean_chord


def test_mean_chord_of_runs():
    mask = np.zeros((2, 10), bool)
    mask[0, 1:5] = True
    mask[1, 2:4] = True
    assert mean_chord(mask, 1) == 3.0 and mean_chord(np.zeros((3, 3), bool), 0) == 0.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_chord_doubles_when_the_nuclei_double(dtype):
    small, _ = make_nuclei_phantom((12, 128, 128), n_nuclei=20, radius_range=(5, 6), spacing=(2, 1, 1), seed=1)
    large, _ = make_nuclei_phantom((12, 128, 128), n_nuclei=8, radius_range=(10, 12), spacing=(2, 1, 1), seed=1)
    scale = {np.uint8: 1, np.uint16: 200, np.float32: 0.01}[dtype]
    a = estimate_object_size((small.astype(np.float64) * scale).astype(dtype)).chord_yx
    b = estimate_object_size((large.astype(np.float64) * scale).astype(dtype)).chord_yx
    assert 1.6 < b / a < 2.5, (a, b)


def test_2d_images_and_bad_input():
    image, _ = make_nuclei_phantom((8, 96, 96), n_nuclei=10, radius_range=(6, 7), spacing=(1, 1, 1), seed=0)
    assert estimate_object_size(image[4]).chord_yx > 3
    with pytest.raises(ValueError, match="cell.tif: NaN or infinite"):
        estimate_object_size(np.full((4, 8, 8), np.nan, np.float32), name="cell.tif")
    with pytest.raises(ValueError, match="needs a"):
        estimate_object_size(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="constant"):
        estimate_object_size(np.ones((4, 8, 8)))
