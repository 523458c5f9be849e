"""check_instance_ids: 2D/3D non-negative integer ids, errors naming the array."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.common.checks import check_instance_ids, check_spacing


def test_accepts_ids_and_names_the_problem():
    assert check_instance_ids([[0, 3], [3, 1]]).dtype.kind == "i"
    with pytest.raises(ValueError, match="seg must be 2D"):
        check_instance_ids(np.zeros(4, int), "seg")
    with pytest.raises(ValueError, match="integer instance ids, got dtype float"):
        check_instance_ids(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="negative ids"):
        check_instance_ids(np.array([[0, -1]]))


def test_check_spacing_accepts_lists_arrays_and_tensors():
    import torch

    assert check_spacing(torch.tensor([0.28, 0.128, 0.128]), 3) == pytest.approx([0.28, 0.128, 0.128])
    assert check_spacing(np.array([1.0, 0.2, 0.2]), 3) == [1.0, 0.2, 0.2]
    assert check_spacing([30.0, 1.0, 1.0], 3, max_anisotropy=None) == [30.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "spacing, message",
    [
        ([0.0, 1.0, 1.0], r"f.tif \[0.0, 1.0, 1.0\]: spacing must be 3 positive numbers"),
        ([-1.0, 1.0, 1.0], "spacing must be 3 positive numbers"),
        ([float("nan"), 1.0, 1.0], "spacing must be 3 positive numbers"),
        ([1.0, 1.0], r"spacing must be 3 positive numbers"),
        ([21.0, 1.0, 1.0], r"anisotropy 21 is above 20 .*\(Z, Y, X\) order"),
    ],
)
def test_check_spacing_refuses_by_name(spacing, message):
    with pytest.raises(ValueError, match=message):
        check_spacing(spacing, 3, "f.tif")
