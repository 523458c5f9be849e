"""check_instance_ids: 2D/3D non-negative integer ids, errors naming the array."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.common.checks import check_instance_ids


def test_accepts_ids_and_names_the_problem():
    assert check_instance_ids([[0, 3], [3, 1]]).dtype.kind == "i"
    with pytest.raises(ValueError, match="seg must be 2D"):
        check_instance_ids(np.zeros(4, int), "seg")
    with pytest.raises(ValueError, match="integer instance ids, got dtype float"):
        check_instance_ids(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="negative ids"):
        check_instance_ids(np.array([[0, -1]]))
