"""RandPoissonNoised (LoadInstancesd on real data runs in tests/postprocessing/test_instance_transforms.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.transforms.instances import RandPoissonNoised


def test_poisson_noise_statistics_and_probability():
    t = RandPoissonNoised("image", prob=1.0, photons_range=(50, 50))
    t.set_random_state(1)
    img = np.full((1, 128, 128), 0.4, np.float32)
    out = t({"image": img})["image"]
    assert abs(out.mean() - 0.4) < 0.01 and abs(out.var() - 0.4 / 50) < 0.001  # Poisson: var = mean / photons
    assert (RandPoissonNoised("image", prob=0.0)({"image": img})["image"] == img).all()
    with pytest.raises(ValueError, match="photons_range"):
        RandPoissonNoised("image", photons_range=(0, 10))
