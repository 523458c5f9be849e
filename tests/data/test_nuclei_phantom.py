"""Synthetic nuclei: exact consecutive labels, anisotropic sizes, bright nuclei on a dark background."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cseg_monai.data.datasets.instances import datalist
from cseg_monai.data.nuclei_phantom import make_nuclei_phantom, write_nuclei_dataset


def test_labels_are_consecutive_and_the_image_follows_them():
    image, labels = make_nuclei_phantom((24, 64, 64), n_nuclei=8, seed=3)
    ids = np.unique(labels)
    assert ids[0] == 0 and (ids == np.arange(len(ids))).all() and 2 <= len(ids) - 1 <= 8
    assert image[labels > 0].mean() > 3 * image[labels == 0].mean()
    again, _ = make_nuclei_phantom((24, 64, 64), n_nuclei=8, seed=3)
    assert np.array_equal(image, again)  # the seed fixes everything


def test_spacing_shapes_the_nuclei():
    _, labels = make_nuclei_phantom((40, 40, 40), n_nuclei=1, radius_range=(8.0, 8.0), spacing=(2.0, 1.0, 1.0), seed=0)
    zs, ys, _ = np.nonzero(labels)
    assert np.ptp(ys) + 1 == pytest.approx(2 * (np.ptp(zs) + 1), abs=2)  # 2x coarser z: half the planes


def test_dataset_layout_is_the_instance_folder_layout(tmp_path):
    root = write_nuclei_dataset(tmp_path, n_volumes=2, shape=(8, 32, 32), n_nuclei=3)
    items = datalist("folder", root)
    assert len(items) == 2 and tifffile.imread(items[0]["label"]).dtype == np.uint16


@pytest.mark.parametrize("kwargs", [{"shape": (3, 32, 32)}, {"n_nuclei": 0}, {"radius_range": (5.0, 2.0)}, {"photons": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_nuclei_phantom(**kwargs)
