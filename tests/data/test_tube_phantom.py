"""Tube phantoms: drifting, branching, ending tubes; blank and shifted sections."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.data.tube_phantom import make_tube_phantom


def test_tubes_drift_less_than_their_radius_so_profiles_overlap():
    image, truth = make_tube_phantom((20, 96, 96), n_tubes=6, seed=1)
    assert image.dtype == np.uint8 and truth.dtype == np.uint32
    for tube in np.unique(truth[truth > 0]):
        present = [z for z in range(20) if (truth[z] == tube).any()]
        for z0, z1 in zip(present, present[1:]):
            if z1 == z0 + 1:
                assert ((truth[z0] == tube) & (truth[z1] == tube)).any(), (tube, z0)
    assert image[truth > 0].mean() > image[truth == 0].mean() + 20  # bright axoplasm


def test_missing_and_shifted_sections():
    _, plain = make_tube_phantom((12, 80, 80), n_tubes=4, seed=2)
    image, truth = make_tube_phantom((12, 80, 80), n_tubes=4, seed=2, missing_sections=(5,), shifted_sections=(8,), shift=(3, 0))
    assert truth[5].max() == 0 and image[5].std() < 20
    assert np.array_equal(truth[8][3:], plain[8][:-3])
    with pytest.raises(ValueError, match="outside"):
        make_tube_phantom((12, 80, 80), missing_sections=(12,))
    with pytest.raises(ValueError, match="shape"):
        make_tube_phantom((12, 20, 20))
