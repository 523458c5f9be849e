"""The instance data sets of ../shared/data: shapes, ids, spacing, splits, quirks."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.data.datasets import instances

from conftest import data_root, require_data


@pytest.mark.parametrize(
    ("kind", "folder", "shape", "spacing"),
    [
        ("plantseg_ovule", "plantseg", (32, 128, 128), (0.235, 0.15, 0.15)),
        ("plantseg_nuclei", "plantseg", (100, 100, 100), (0.28371837, 0.12678642, 0.12678642)),
        ("gala", "gala_fibsem", (50, 100, 200), None),
    ],
)
def test_single_volumes_and_z_splits(kind, folder, shape, spacing):
    require_data(folder)
    (item,) = instances.datalist(kind, data_root())
    image, labels, sp = instances.load_item(item)
    assert image.shape == (1,) + shape and labels.shape == shape and labels.dtype == np.int64
    assert (sp is None) == (spacing is None) and (spacing is None or np.allclose(sp, spacing))
    (train,), (val,) = instances.datalist(kind, data_root(), "train"), instances.datalist(kind, data_root(), "val")
    _, lab_t, _ = instances.load_item(train)
    _, lab_v, _ = instances.load_item(val)
    assert lab_t.shape[0] + lab_v.shape[0] == shape[0]  # disjoint and complete along z
    np.testing.assert_array_equal(np.concatenate([lab_t, lab_v]), labels)
    assert instances.datalist(kind, data_root(), "all") == [item]  # "all": the whole volume (in-context evaluation)
    with pytest.raises(ValueError, match="split must be 'train', 'val', 'all' or None, got 'test'"):
        instances.datalist(kind, data_root(), "test")


def test_label_conventions():
    require_data("plantseg")
    _, ovule, _ = instances.load_item(instances.datalist("plantseg_ovule", data_root())[0])
    ids = np.unique(ovule)
    assert len(ids) == 51 and ids.max() == 918  # dense cells, ids not consecutive
    _, nuclei, _ = instances.load_item(instances.datalist("plantseg_nuclei", data_root())[0])
    assert np.unique(nuclei).tolist() == list(range(55))  # background 0 and nuclei 1..54
    require_data("gala_fibsem")
    _, gala, _ = instances.load_item(instances.datalist("gala", data_root())[0])
    assert len(np.unique(gala)) == 88 and 0.05 < (gala == 0).mean() < 0.1  # 0 = thin boundaries


def test_ctc_time_points_and_thin_stacks():
    require_data("ctc_fluo_n3dh_cho")
    train, val = instances.datalist("ctc_cho", data_root(), "train"), instances.datalist("ctc_cho", data_root(), "val")
    assert [it["t"] for it in train] == list(range(12)) and [it["t"] for it in val] == [12, 13, 14]
    image, labels, spacing = instances.load_item(val[0])
    assert image.shape == (1, 5, 443, 512) and spacing == instances.CTC_SPACING
    assert len(np.unique(labels)) - 1 == 10  # nuclei at t = 12


def test_folder_layout_and_bad_input(tmp_path):
    from cseg_monai.data.writers import write_tiff

    write_tiff(tmp_path / "images" / "a.tif", np.zeros((4, 8, 8), np.uint8))
    write_tiff(tmp_path / "labels" / "a.tif", np.ones((4, 8, 8), np.uint16))
    image, labels, spacing = instances.load_item(instances.datalist("folder", tmp_path)[0])
    assert image.shape == (1, 4, 8, 8) and spacing is None
    write_tiff(tmp_path / "labels" / "a.tif", np.ones((4, 8, 9), np.uint16))
    with pytest.raises(ValueError, match="a.tif: label shape \\(4, 8, 9\\) differs"):
        instances.load_item(instances.datalist("folder", tmp_path)[0])
    write_tiff(tmp_path / "images" / "b.tif", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(FileNotFoundError, match="b.tif is missing"):
        instances.datalist("folder", tmp_path)
    with pytest.raises(ValueError, match="unknown instance data set kind 'ctc'"):
        instances.datalist("ctc", tmp_path)
    with pytest.raises(FileNotFoundError, match="sample_ovule.h5 is missing"):
        instances.datalist("plantseg_ovule", tmp_path)


def test_dsb_rows_split_and_phantoms_from_seeds():
    require_data("dsb2018_nuclei_2d")
    (train,), (val,) = instances.datalist("dsb_nuclei", data_root(), "train"), instances.datalist("dsb_nuclei", data_root(), "val")
    (img_t, _, sp), (_, lab_v, _) = instances.load_item(train), instances.load_item(val)
    assert img_t.shape == (1, 1, 384, 512) and lab_v.shape == (1, 128, 512) and sp is None
    phantoms = instances.datalist("nuclei_phantoms", data_root(), "train")
    assert len(phantoms) == 24 and {p["seed"] for p in phantoms}.isdisjoint(
        p["seed"] for p in instances.datalist("nuclei_phantoms", data_root(), "val")
    )
    a, b = instances.load_item(phantoms[0]), instances.load_item(phantoms[0])
    assert np.array_equal(a[0], b[0]) and a[1].max() > 0 and a[2][1] == 1.0  # the same seed, the same phantom


def test_union_of_kinds_repeats_and_scales():
    require_data("plantseg")
    require_data("ctc_fluo_n3dh_cho")
    items = instances.datalist(["plantseg_nuclei", "ctc_cho"], data_root(), "train")
    assert [i["kind"] for i in items].count("ctc_cho") == 12 and items[0]["kind"] == "plantseg_nuclei"
    more = instances.with_scales(instances.repeat_kinds(items, {"plantseg_nuclei": 3}), [0.7, 1.4])
    assert len(more) == 2 * (12 + 3) and {i["zoom"] for i in more} == {0.7, 1.4}
    with pytest.raises(ValueError, match="repeats must be whole numbers"):
        instances.repeat_kinds(items, {"ctc_cho": 0})
    with pytest.raises(ValueError, match="empty list"):
        instances.datalist([], data_root())
