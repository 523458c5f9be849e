"""EPFL CA1 multi-class reader on the real data (a few slices) and broken copies."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from cseg_monai.data.datasets import epfl_ca1 as ep
from cseg_monai.data.readers import load_image

from conftest import require_data

SLICES = ("training0000", "training0042", "training0135")


def test_list_and_load():
    root = require_data("epfl_ca1_multiclass")
    ids = ep.list_slices(root)
    assert len(ids) == 27 and ids[0] == "training0000"
    seen = set()
    for sid in SLICES:
        img, lab = ep.load_slice(root, sid)
        assert img.shape == lab.shape == (768, 1024) and lab.dtype == np.uint8
        seen |= set(np.unique(lab).tolist())
    assert seen == set(range(len(ep.ORGANELLE_CLASSES)))


def test_precedence():
    train = require_data("epfl_ca1_multiclass", "epfl_train")
    sid = SLICES[0]
    _, lab = ep.load_slice(train, sid)
    m = {f: load_image(train / f / f"{sid}.png")[0] > 127 for f in ep.MASK_FOLDERS}
    assert (lab[m["mitochondrial boundaries"]] == 3).all()
    assert (lab[m["mitochondrion"] & ~m["mitochondrial boundaries"]] == 2).all()
    only_mem = m["membranes"] & ~(m["mitochondrion"] | m["mitochondrial boundaries"] | m["PSD"] | m["vesicles"])
    assert (lab[only_mem] == 1).all()
    assert (lab[~np.any(np.stack([m[f] for f in ep.MASK_FOLDERS if f != "axon"]), 0)] == 0).all()


def test_datalist():
    root = require_data("epfl_ca1_multiclass")
    items = ep.datalist(root, [0, 1])
    assert [i["slice_id"] for i in items] == ["training0000", "training0001"]
    assert set(items[0]["masks"]) == set(ep.MASK_FOLDERS)
    with pytest.raises(ValueError, match="out of range"):
        ep.datalist(root, [27])


def _copy(train, tmp_path, sid, skip=None):
    for folder in (ep.IMAGE_FOLDER, *ep.MASK_FOLDERS):
        (tmp_path / folder).mkdir()
        if folder != skip:
            shutil.copy(train / folder / f"{sid}.png", tmp_path / folder / f"{sid}.png")


def test_missing_mask(tmp_path):
    train = require_data("epfl_ca1_multiclass", "epfl_train")
    _copy(train, tmp_path, "training0000", skip="PSD")
    with pytest.raises(FileNotFoundError, match=r"PSD/training0000\.png.*'PSD' missing"):
        ep.load_slice(tmp_path, "training0000")


def test_bad_shape_mask(tmp_path):
    train = require_data("epfl_ca1_multiclass", "epfl_train")
    _copy(train, tmp_path, "training0000")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "vesicles" / "training0000.png")
    with pytest.raises(ValueError, match=r"vesicles/training0000\.png: mask shape \(10, 10\) differs"):
        ep.load_slice(tmp_path, "training0000")
