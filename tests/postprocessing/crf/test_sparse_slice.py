"""Helpers of the sparse kernels (``crf.sparse_slice``): the stable integer sort."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cseg_monai.postprocessing.crf.sparse_slice import _stable_order


@pytest.mark.parametrize("bound", [50, 1 << 40, 1 << 62])  # packed sort, and an argsort where key and position do not fit
def test_stable_order_sorts_stably(bound):
    keys = torch.from_numpy(np.random.default_rng(4).integers(0, min(bound, 50), 5000))
    keys[::7] = 3  # many ties
    order = _stable_order(keys * (bound // 50), bound)
    assert torch.equal(order, torch.argsort(keys, stable=True))
