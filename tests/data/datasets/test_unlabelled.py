"""Unlabelled pools: the right images, never a validation or test part, scaled alike whatever the dtype."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cseg_monai.common import data_root
from cseg_monai.data.datasets import epfl_ca1, instances
from cseg_monai.data.datasets.unlabelled import POOLS, datalist, load_pool_item, robust_scale

from conftest import require_data


def test_epfl_pool_is_the_training_split_only():
    require_data("epfl_ca1_multiclass", "epfl_train", "slices")
    items = datalist("epfl_train", data_root())
    every = epfl_ca1.datalist(data_root() / "epfl_ca1_multiclass")
    assert [i["image"] for i in items] == [i["image"] for i in every[:20]]
    assert not {i["image"] for i in items} & {i["image"] for i in every[20:]}, "validation / test slices leaked"
    image = load_pool_item(items[0], scaling="organelle")
    assert image.shape == (1, 768, 1024) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1


def test_isbi_pool_is_the_unlabelled_test_slices():
    require_data("isbi2012", "test", "image")
    items = datalist("isbi_test", data_root())
    assert len(items) == 30 and all("/test/" in i["image"] for i in items)


def test_instance_pools_take_the_training_parts():
    require_data("gala_fibsem", "train-image.h5")
    (item,) = datalist("gala", data_root())
    image = load_pool_item(item)
    z0, z1 = instances.SPLITS["gala"]["train"]["z"]
    assert image.shape == (1, z1 - z0, 100, 200)
    with pytest.raises(ValueError, match="pool 'gala' holds 3D images, not 2D"):
        datalist("gala", data_root(), spatial_dims=2)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_folder_pool_scales_8_16_bit_and_float_alike(tmp_path, dtype):
    rng = np.random.default_rng(0)
    base = rng.random((40, 50))
    scale = {np.uint8: 250, np.uint16: 60000, np.float32: 3.5}[dtype]
    tifffile.imwrite(tmp_path / "a.tif", (base * scale).astype(dtype))
    (item,) = datalist("folder", tmp_path, spatial_dims=2)
    image = load_pool_item(item)
    reference = robust_scale(base)
    assert np.abs(image[0] - reference).max() < 0.02


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown pool 'epfl'"):
        datalist("epfl", tmp_path)
    with pytest.raises(ValueError, match="no image files with suffixes"):
        datalist("folder", tmp_path)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((2, 20, 20), np.uint8))
    (item,) = datalist("folder", tmp_path, spatial_dims=2)
    with pytest.raises(ValueError, match="rgb.tif: expected a 2D grey image, got shape \\(2, 20, 20\\)"):
        load_pool_item(item)
    tifffile.imwrite(tmp_path / "rgb.tif", np.full((20, 20), np.nan, np.float32))
    with pytest.raises(ValueError, match="rgb.tif: image holds NaN"):
        load_pool_item(item)
    with pytest.raises(ValueError, match="scaling must be one of"):
        load_pool_item(item, scaling="minmax")
    assert set(POOLS) >= {"epfl_train", "isbi_test", "gala", "folder"}
