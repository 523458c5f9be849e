"""Axon section data: phantoms by seed, folders of raw and id stacks, the interior target."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cseg_monai.data.datasets.axon_sections import datalist, interior_target, load_item


def test_phantom_items_are_reproducible_and_damaged():
    items = datalist("phantom", shape=(10, 96, 96), n_phantoms=2, seed_offset=7)
    assert [i["seed"] for i in items] == [7, 8]
    a, ids, _ = load_item(items[0])
    b, _, _ = load_item(items[0])
    assert np.array_equal(a, b) and ids.max() > 0
    assert any(ids[z].max() == 0 for z in range(1, 9))  # one blank section


def test_folder_items_check_names_and_shapes(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.zeros((3, 16, 16), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels" / "a.tif", np.ones((3, 16, 16), np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "images" / "b.tif", np.zeros((3, 16, 16), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels" / "b.tif", np.ones((3, 8, 16), np.uint16), photometric="minisblack")
    items = datalist("folder", tmp_path)
    assert [i["image"].endswith(n) for i, n in zip(items, ("a.tif", "b.tif"))] == [True, True]
    image, ids, _ = load_item(items[0])
    assert image.dtype == np.float32 and ids.dtype == np.int64
    with pytest.raises(ValueError, match=r"b.tif: ids of shape \(3, 8, 16\)"):
        load_item(items[1])
    with pytest.raises(ValueError, match="out of range"):
        datalist("folder", tmp_path, indices=[5])
    with pytest.raises(ValueError, match="dataset_kind"):
        datalist("vnc")
    with pytest.raises(ValueError, match="needs a dataset_dir"):
        datalist("folder")


def test_interior_keeps_touching_profiles_apart():
    ids = np.zeros((1, 8, 12), np.int64)
    ids[0, 1:7, 1:6] = 1
    ids[0, 1:7, 6:11] = 2
    inner = interior_target(ids)[0]
    assert inner[:, 5].sum() == 0 and inner[:, 6].sum() == 0 and inner[3, 3] == 1 and inner[3, 8] == 1
