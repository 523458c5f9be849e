"""LoadAxonSectionsd: image, interior target and true ids of one item, aligned, with their source."""

from __future__ import annotations

import numpy as np

from cseg_monai.data.datasets.axon_sections import datalist
from cseg_monai.transforms import LoadAxonSectionsd


def test_loads_aligned_image_target_and_ids():
    d = LoadAxonSectionsd()(datalist("phantom", shape=(6, 80, 80), n_phantoms=1, seed_offset=3)[0])
    image, label, ids = d["image"], d["label"], d["ids"]
    assert image.shape == label.shape == ids.shape == (1, 6, 80, 80)
    assert image.meta["filename_or_obj"] == "phantom_3"
    assert bool(((label > 0) <= (ids > 0)).all())  # the target lies inside the objects
    assert float(image[label > 0].mean()) > float(image[ids == 0].mean())  # bright axoplasm
    assert np.array_equal(np.unique(label.numpy()), [0, 1])
