"""LoadOrganelled and ScaleOrganelleIntensityd: loaded and scaled as the organelle bundle trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from cseg_monai.data.datasets.organelles import datalist
from cseg_monai.data.phantom import write_organelle_dataset
from cseg_monai.transforms import LoadOrganelled, ScaleOrganelleIntensityd


def test_load_gives_scaled_images_and_sparse_labels(tmp_path):
    root = write_organelle_dataset(tmp_path, n_slices=2, shape=(48, 40), labelled_fraction=0.5)
    d = LoadOrganelled()(datalist("folder", root)[1])
    assert isinstance(d["image"], MetaTensor) and d["image"].dtype == torch.float32
    assert 0.0 <= float(d["image"].min()) and float(d["image"].max()) <= 1.0
    values = set(torch.unique(d["label"]).tolist())
    assert 255 in values and values - {255} <= set(range(6))  # half the rows unlabelled
    assert d["label"].meta["filename_or_obj"].endswith("1.tif")


def test_scale_by_dtype():
    out = ScaleOrganelleIntensityd("image")({"image": np.array([[[10, 30]]], np.uint16)})["image"]
    assert out.flatten().tolist() == [0.0, 1.0]  # not uint8: min-max
    meta = MetaTensor(torch.tensor([[[255]]], dtype=torch.uint8), meta={"filename_or_obj": "a.tif"})
    kept = ScaleOrganelleIntensityd("image")({"image": meta})["image"]
    assert isinstance(kept, MetaTensor) and kept.meta["filename_or_obj"] == "a.tif" and float(kept) == 1.0
    with pytest.raises(ValueError):
        ScaleOrganelleIntensityd("image")({"image": np.array([[[np.nan, 1.0]]])})
