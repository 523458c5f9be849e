"""The organelle datalist/loader over the folder layout (phantom) and the real sets."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cseg_monai.data.datasets import organelles
from cseg_monai.data.phantom import write_organelle_dataset
from cseg_monai.transforms import LoadOrganelled

from conftest import require_data


def test_folder_layout_roundtrip_and_sparse_labels(tmp_path):
    root = write_organelle_dataset(tmp_path / "o", n_slices=3, shape=(64, 80), labelled_fraction=0.25)
    items = organelles.datalist("folder", root)
    assert len(items) == 3
    img, lab = organelles.load_item(items[2])
    assert img.shape == lab.shape == (1, 64, 80) and img.dtype == np.float32 and 0 <= img.min() <= img.max() <= 1
    rows = (lab[0] != 255).any(axis=1)
    assert rows.sum() == 16  # a quarter of the rows is labelled
    assert set(np.unique(lab[0][rows])) <= set(range(6))
    d = LoadOrganelled()(items[0])
    assert d["image"].meta["filename_or_obj"].endswith("0.tif")


def test_bad_folder_inputs_name_the_file(tmp_path):
    root = write_organelle_dataset(tmp_path / "o", n_slices=2, shape=(32, 32))
    with pytest.raises(ValueError, match="out of range"):
        organelles.datalist("folder", root, [5])
    with pytest.raises(ValueError, match="unknown organelle data set kind"):
        organelles.datalist("nope", root)
    tifffile.imwrite(f"{root}/labels/1.tif", np.full((32, 32), 9, np.uint8))
    with pytest.raises(ValueError, match=r"1\.tif.*label values \[9\]"):
        organelles.load_item(organelles.datalist("folder", root)[1])
    tifffile.imwrite(f"{root}/labels/1.tif", np.zeros((32, 31), np.uint8))
    with pytest.raises(ValueError, match="differs"):
        organelles.load_item(organelles.datalist("folder", root)[1])
    (tmp_path / "o" / "labels" / "1.tif").unlink()
    with pytest.raises(FileNotFoundError, match="label of"):
        organelles.datalist("folder", root)


def test_epfl_items_load_with_the_documented_classes():
    root = require_data("epfl_ca1_multiclass")
    items = organelles.datalist("epfl_ca1", root, [0, 26])
    img, lab = organelles.load_item(items[1])
    assert img.shape == lab.shape == (1, 768, 1024)
    assert set(np.unique(lab)) <= set(range(6))


def test_drosophila_split_keeps_only_its_sections():
    root = require_data("drosophila_vnc")
    item = organelles.datalist("drosophila_vnc", root, [12, 13])[0]
    img, lab = organelles.load_item(item)
    assert img.shape == lab.shape == (1, 15, 1024, 1024)
    labelled = [(lab[0, z] != 255).any() for z in range(15)]
    assert [z for z, ok in enumerate(labelled) if ok] == [12, 13]
    with pytest.raises(ValueError, match="sections"):
        organelles.datalist("drosophila_vnc", root, [99])
