"""The ISBI 2012 data-set module on our real copy and on a phantom of the same layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cseg_monai.data.datasets import isbi2012

from conftest import require_data


def test_layout_of_real_copy():
    root = require_data("isbi2012")
    items = isbi2012.datalist(root, isbi2012.DEFAULT_VAL_INDICES)
    assert [p["image"].rsplit("/", 1)[1] for p in items] == ["20.png", "21.png", "22.png", "23.png"]
    assert all(p["label"].endswith(p["image"].rsplit("/", 1)[1]) for p in items)
    assert len(isbi2012.datalist(root)) == 24
    test_items = isbi2012.datalist(root, split="test", with_labels=False)
    assert len(test_items) == 30 and "label" not in test_items[0]
    label = np.array(Image.open(items[0]["label"]).convert("L"))
    mask = isbi2012.label_to_membrane(label, items[0]["label"])
    assert mask.dtype == np.uint8 and 0.1 < mask.mean() < 0.35  # about 22% membrane


def test_label_to_membrane_refuses_other_values():
    with pytest.raises(ValueError, match=r"lab.png: .* found \[1, 128\]"):
        isbi2012.label_to_membrane(np.array([[0, 1, 128, 255]]), "lab.png")


def test_datalist_errors(tmp_path, phantom_isbi):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        isbi2012.datalist(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="train/image"):
        isbi2012.datalist(tmp_path)
    with pytest.raises(ValueError, match=r"indices \[99\] out of range"):
        isbi2012.datalist(phantom_isbi, [0, 99])
    (phantom_isbi / "train" / "label" / "5.png").rename(phantom_isbi / "train" / "label" / "5.bak")
    try:
        with pytest.raises(FileNotFoundError, match="no label for .*5.png"):
            isbi2012.datalist(phantom_isbi, [5])
    finally:
        (phantom_isbi / "train" / "label" / "5.bak").rename(phantom_isbi / "train" / "label" / "5.png")


def test_source_is_pinned():
    assert isbi2012.MIRROR_URL.startswith("https://")
    assert len(isbi2012.MIRROR_SHA256) == 64 and int(isbi2012.MIRROR_SHA256, 16) >= 0
