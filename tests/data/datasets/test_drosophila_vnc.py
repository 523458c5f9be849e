"""Drosophila VNC (Gerhard et al. 2013) reader: real data on two sections, plus synthetic errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from cseg_monai.data.datasets import drosophila_vnc as dv

from conftest import require_data


def test_mapping_synthetic():
    codes = np.array([[0, 32, 64, 96, 128], [159, 191, 223, 255, 255]], np.uint8)
    assert dv.labels_to_classes(codes).tolist() == [[1, 1, 1, 1, 1], [255, 2, 4, 0, 0]]


def test_unknown_code_names_file():
    with pytest.raises(ValueError, match=r"f\.png: unknown label codes \[7\]"):
        dv.labels_to_classes(np.array([[7, 0]], np.uint8), "f.png")


def test_real_two_sections():
    root = require_data("drosophila_vnc")
    assert dv.list_sections(root) == list(range(15))
    raw, lab = dv.load_stack(root, sections=[0, 1])
    assert raw.shape == lab.shape == (2, 1024, 1024)
    assert raw.dtype == lab.dtype == np.uint8
    assert set(np.unique(lab).tolist()) <= {0, 1, 2, 4, 255}
    assert {0, 1, 2}.issubset(np.unique(lab).tolist())
    assert dv.SPACING_ZYX == (50.0, 4.6, 4.6)


def test_bad_label_file(tmp_path):
    root = require_data("drosophila_vnc", "stack1")
    (tmp_path / "raw").mkdir()
    (tmp_path / "labels").mkdir()
    shutil.copy(root / "raw" / "00.tif", tmp_path / "raw" / "00.tif")
    Image.fromarray(np.full((1024, 1024), 7, np.uint8)).save(tmp_path / "labels" / "labels00000000.png")
    with pytest.raises(ValueError, match="labels00000000.png: unknown label codes"):
        dv.load_stack(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"sections \[3\]"):
        dv.load_stack(tmp_path, sections=[3])
