"""The `cseg` command line, in-process (fire) and once as a real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from cseg_monai.cli import CLI

from conftest import BUNDLES


def test_bundles_lists_the_membrane_bundle():
    assert "isbi2012_em_membrane_segmentation" in CLI().bundles()


def test_phantom_writes_isbi_layout_and_refuses_to_overwrite(tmp_path):
    CLI().phantom(str(tmp_path / "p"), n_train=2, n_test=1, size=64)
    assert sorted(p.name for p in (tmp_path / "p" / "train" / "image").iterdir()) == ["0.png", "1.png"]
    with pytest.raises(ValueError, match="not empty"):
        CLI().phantom(str(tmp_path / "p"), n_train=2, n_test=1, size=64)


def test_infer_with_shipped_weights_on_a_folder_and_a_file(phantom_isbi, tmp_path):
    assert (BUNDLES / "isbi2012_em_membrane_segmentation" / "models" / "model.pt").is_file()
    CLI().infer("isbi2012_em_membrane_segmentation", str(phantom_isbi / "test" / "image"), str(tmp_path / "a"),
                progress_bar=False)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["0_labels.tif", "0_prob.tif", "1_labels.tif",
                                                                  "1_prob.tif", "run_summary.json"]  # fmt: skip
    summary = json.loads((tmp_path / "a" / "run_summary.json").read_text())
    assert summary["n_files"] == 2 and summary["failed"] == []
    one = phantom_isbi / "train" / "image" / "3.png"
    CLI().infer("isbi2012_em_membrane_segmentation", str(one), str(tmp_path / "b"), progress_bar=False)
    prob = tifffile.imread(tmp_path / "b" / "3_prob.tif")
    assert prob.shape == (1, 128, 128) and prob.dtype == np.float32


def test_unknown_bundle_and_missing_input(tmp_path):
    with pytest.raises(ValueError, match="unknown bundle 'nope'"):
        CLI().infer("nope", str(tmp_path), str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CLI().infer("isbi2012_em_membrane_segmentation", str(tmp_path / "missing"), str(tmp_path / "o"))


def test_console_script_reports_bad_input_in_one_line(tmp_path):
    cseg = Path(sys.executable).with_name("cseg")
    proc = subprocess.run([str(cseg), "mlflow-ui", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("cseg: error: no MLflow store at")
    assert "Traceback" not in proc.stderr


def test_phantom_organelle_layout_feeds_the_organelle_datalist(tmp_path):
    from cseg_monai.data.datasets.organelles import datalist

    msg = CLI().phantom(str(tmp_path / "o"), n_train=2, size=64, layout="organelle")
    assert "2 slices" in msg
    assert len(datalist("folder", tmp_path / "o")) == 2
    with pytest.raises(ValueError, match="not empty"):
        CLI().phantom(str(tmp_path / "o"), n_train=2, size=64, layout="organelle")


def test_infer_organelle_bundle_on_its_sample_data(tmp_path):
    bundle = BUNDLES / "fibsem_organelle_centervoxel_segmentation"
    CLI().infer("fibsem_organelle_centervoxel_segmentation", str(bundle / "sample_data"), str(tmp_path / "o"),
                progress_bar=False)
    prob = tifffile.imread(tmp_path / "o" / "phantom_2026_prob.tif")
    labels = tifffile.imread(tmp_path / "o" / "phantom_2026_labels.tif")
    assert prob.shape == (6, 256, 256) and prob.dtype == np.float32
    assert np.allclose(prob.sum(0), 1, atol=1e-5)
    assert labels.dtype == np.uint8 and np.array_equal(labels, prob.argmax(0))
    assert len(np.unique(labels)) >= 3  # membranes, cytoplasm and some organelle on the phantom


def test_infer_large_writes_ome_zarr_and_refuses_a_bundle_without_it(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (2, 96, 80)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    message = CLI().infer("isbi2012_em_membrane_segmentation", str(tmp_path / "stack.tif"), str(tmp_path / "out"), large=True,
                          scheduler="synchronous", tta_transforms=1, progress_bar=False)
    assert "OME-Zarr" in message
    root = zarr.open_group(tmp_path / "out" / "stack.ome.zarr", mode="r")
    assert root["0"].shape == (1, 2, 96, 80) and root["0"].dtype == np.uint8
    assert set(np.unique(root["labels/segmentation/0"][:])) <= {0, 1}
    with pytest.raises(ValueError, match="no configs/inference_large.json"):
        CLI().infer("em_selfsupervised_pretraining", str(tmp_path / "stack.tif"), str(tmp_path / "x"), large=True)
