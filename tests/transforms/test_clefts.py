"""Loading cleft items into channel-first MetaTensors, and cleft ids from a probability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from cseg_monai.data.datasets.synaptic_clefts import datalist, load_item
from cseg_monai.transforms.clefts import CleftComponentsd, LoadCleftd, cleft_components

from conftest import require_data


def test_load_phantom_item_channel_first_with_its_voxel_size():
    item = datalist("phantom", shape=(4, 64, 64))[0]
    d = LoadCleftd()(item)
    image, clefts, _ = load_item(item)
    assert isinstance(d["image"], MetaTensor) and d["image"].dtype == torch.float32
    assert np.array_equal(d["image"][0].numpy(), image) and np.array_equal(d["label"][0].numpy(), clefts)
    assert d["image"].meta["filename_or_obj"] == "phantom_0" and d["label"].meta["voxel_size_nm"] == [46.0, 4.6, 4.6]


def test_load_real_vnc_sections_names_them():
    root = require_data("drosophila_vnc")
    d = LoadCleftd()(datalist("drosophila_vnc", root, [12, 13, 14])[0])
    assert tuple(d["image"].shape) == (1, 3, 1024, 1024)
    assert d["image"].meta["filename_or_obj"].endswith("sections_12-14")


def test_components_are_26_connected_and_small_ones_go():
    p = np.zeros((1, 4, 10, 10), np.float32)
    p[0, 0, 0, 0] = p[0, 1, 1, 1] = 0.9  # diagonal neighbours: one cleft
    p[0, 3, 8, 2:6] = 0.7
    p[0, 3, 2, 8] = 0.6
    ids = cleft_components(p)
    assert ids.max() == 3 and ids[0, 0, 0, 0] == ids[0, 1, 1, 1]
    kept = cleft_components(p, min_size=2)
    assert kept.max() == 2 and kept[0, 3, 2, 8] == 0 and sorted(np.unique(kept).tolist()) == [0, 1, 2]
    assert cleft_components(p, threshold=0.8).max() == 1
    d = CleftComponentsd("pred", names="labels")({"pred": MetaTensor(torch.from_numpy(p), meta={"filename_or_obj": "v.tif"})})
    assert d["labels"].meta["filename_or_obj"] == "v.tif" and int(d["labels"].max()) == 3 and d["pred"].dtype == torch.float32
    with pytest.raises(ValueError, match="threshold"):
        CleftComponentsd("pred", threshold=1.5)
    with pytest.raises(ValueError, match="one output per key"):
        CleftComponentsd(["a", "b"], names="c")
