"""Synaptic cleft items: phantoms, the real VNC synapse labels, a folder of one's own, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from cseg_monai.data.datasets import drosophila_vnc
from cseg_monai.data.datasets.synaptic_clefts import EPFL_VOXEL_NM, PHANTOM_VOXEL_NM, datalist, load_item

from conftest import require_data


def test_phantoms_are_seeded_and_hold_clefts():
    items = datalist("phantom", shape=(8, 96, 96), n_volumes=2, first_seed=5)
    assert [i["seed"] for i in items] == [5, 6]
    a, clefts, voxel = load_item(items[0])
    again = load_item(items[0])
    assert np.array_equal(a, again[0]) and np.array_equal(clefts, again[1])
    assert voxel == PHANTOM_VOXEL_NM and a.dtype == np.uint8
    assert 0 < clefts.mean() < 0.05
    assert not np.array_equal(a, load_item(items[1])[0])


def test_real_vnc_synapses_are_label_code_223():
    root = require_data("drosophila_vnc")
    item = datalist("drosophila_vnc", root, [10, 11])[0]
    image, clefts, voxel = load_item(item)
    assert image.shape == clefts.shape == (2, 1024, 1024) and voxel == drosophila_vnc.SPACING_ZYX
    codes = np.asarray(Image.open(next((root / "stack1" / "labels").glob("*10.png"))))
    assert np.array_equal(clefts[0] == 1, codes == 223)
    assert 0.001 < clefts.mean() < 0.02
    with pytest.raises(ValueError, match=r"sections \[99\] not in"):
        datalist("drosophila_vnc", root, [99])


def test_epfl_psd_slices_become_volumes_of_identical_sections():
    root = require_data("epfl_ca1_multiclass")
    items = datalist("epfl_psd", root, [0, 20], depth=3)
    assert [i["slice_id"] for i in items] == ["training0000", "training0105"]
    image, clefts, voxel = load_item(items[1])
    assert image.shape == clefts.shape == (3, 768, 1024) and voxel == EPFL_VOXEL_NM
    assert all(np.array_equal(image[0], image[k]) and np.array_equal(clefts[0], clefts[k]) for k in (1, 2))
    psd = np.asarray(Image.open(root / "epfl_train" / "PSD" / "training0105.png").convert("L")) > 127  # an RGBA file
    raw = np.asarray(Image.open(root / "epfl_train" / "slices" / "training0105.png").convert("L"))
    assert np.array_equal(clefts[0] == 1, psd) and np.array_equal(image[0], raw) and clefts.max() == 1
    assert 0.001 < clefts.mean() < 0.02
    assert len(datalist("epfl_psd", root)) == 27
    with pytest.raises(ValueError, match=r"positions \[27\] out of range"):
        datalist("epfl_psd", root, [27])
    with pytest.raises(ValueError, match="depth must be >= 1"):
        datalist("epfl_psd", root, [0], depth=0)
    with pytest.raises(ValueError, match="no EPFL slice chosen"):
        datalist("epfl_psd", root, [])


def test_a_folder_of_volumes_with_their_labels(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    vol = np.random.default_rng(0).integers(0, 255, (4, 32, 32), dtype=np.uint8)
    ids = np.zeros((4, 32, 32), np.uint16)
    ids[1, 4:8, 4:10] = 7
    fiji = {"spacing": 0.04, "unit": "um", "axes": "ZYX"}
    tifffile.imwrite(tmp_path / "images" / "a.tif", vol, imagej=True, resolution=(1 / 0.005, 1 / 0.005), metadata=fiji)
    tifffile.imwrite(tmp_path / "labels" / "a.tif", ids, photometric="minisblack")
    tifffile.imwrite(tmp_path / "images" / "b.tif", vol, photometric="minisblack")
    image, clefts, voxel = load_item(datalist("folder", tmp_path, [0])[0])
    assert np.array_equal(image, vol) and clefts.sum() == 24 and clefts.max() == 1
    assert voxel == pytest.approx((40.0, 5.0, 5.0))
    with pytest.raises(FileNotFoundError, match=r"b\.tif: no label"):
        datalist("folder", tmp_path)
    tifffile.imwrite(tmp_path / "labels" / "b.tif", ids[:3], photometric="minisblack")
    with pytest.raises(ValueError, match=r"b\.tif: label shape \(3, 32, 32\) differs"):
        load_item(datalist("folder", tmp_path, [1])[0])
    tifffile.imwrite(tmp_path / "labels" / "b.tif", ids.astype(np.int16) - 1, photometric="minisblack")
    with pytest.raises(ValueError, match="0 \\(background\\) and positive integers"):
        load_item(datalist("folder", tmp_path, [1])[0])
    tifffile.imwrite(tmp_path / "labels" / "b.tif", ids, photometric="minisblack")
    assert load_item(datalist("folder", tmp_path, [1])[0])[2] is None  # b states no voxel size


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind must be one of"):
        datalist("cremi")
    with pytest.raises(ValueError, match="needs the data set folder"):
        datalist("folder")
    with pytest.raises(ValueError, match="phantoms need"):
        datalist("phantom", shape=(8, 64))
    with pytest.raises(FileNotFoundError, match="images/ and labels/"):
        datalist("folder", "/nonexistent/clefts")
    with pytest.raises(ValueError, match="item kind"):
        load_item({"kind": "other"})
