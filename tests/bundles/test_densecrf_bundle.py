"""The dense-CRF bundle: inference on its sample, before/after evaluation with MLflow, overrides, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cseg_monai.data.phantom import write_organelle_dataset
from cseg_monai.data.writers import write_tiff
from cseg_monai.postprocessing import CRFParams, DenseCRF, have_pydensecrf

from conftest import BUNDLES, ROOT, error_chain

BUNDLE = BUNDLES / "em_densecrf_postprocessing"
CONFIGS = BUNDLE / "configs"


def run_bundle(configs: list[str], run_id: str = "run", **override):
    from monai.bundle import run

    files = [str(CONFIGS / c) for c in configs]
    run(run_id=run_id, config_file=files if len(files) > 1 else files[0], logging_file=str(CONFIGS / "logging.conf"),
        progress_bar=False, **override)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Phantom slices with full labels, and noisy probabilities of those labels (a weak classifier)."""
    root = Path(write_organelle_dataset(tmp_path_factory.mktemp("crf_data"), n_slices=2, shape=(96, 96), seed=11))
    probs = root / "probs"
    rng = np.random.default_rng(0)
    for i in range(2):
        label = tifffile.imread(root / "labels" / f"{i}.tif").astype(np.int64)
        logits = 1.5 * np.moveaxis(np.eye(6)[label], -1, 0) + 1.2 * rng.normal(size=(6,) + label.shape)
        prob = np.exp(logits - logits.max(0))
        write_tiff(probs / f"{i}_prob.tif", (prob / prob.sum(0)).astype(np.float32))
    return root


def test_inference_on_the_shipped_sample(tmp_path):
    run_bundle(["inference.json"], output_dir=str(tmp_path))
    labels = tifffile.imread(tmp_path / "phantom_2026_labels.tif")
    prob = tifffile.imread(tmp_path / "phantom_2026_prob.tif")
    assert labels.dtype == np.uint8 and labels.shape == (256, 256)
    assert prob.dtype == np.float32 and prob.shape == (6, 256, 256)
    np.testing.assert_allclose(prob.sum(0), 1.0, atol=1e-4)
    assert (prob.argmax(0) == labels).all()
    # the bundle's result is the library's on the same inputs and parameters
    from cseg_monai.data.datasets.organelles import scale_image

    image = scale_image(tifffile.imread(BUNDLE / "sample_data" / "images" / "phantom_2026.tif"))
    given = tifffile.imread(BUNDLE / "sample_data" / "probs" / "phantom_2026_prob.tif")
    params = json.loads((CONFIGS / "inference.json").read_text())["crf_params"]
    expected = DenseCRF(CRFParams.from_dict(params), device="cpu").labels(given, image)
    assert (expected == labels).all()
    assert (labels != given.argmax(0)).any()  # the CRF changed something


def test_inference_command_line_and_bad_probabilities_keep_old_outputs(tmp_path):
    images, probs, out = tmp_path / "images", tmp_path / "probs", tmp_path / "out"
    write_tiff(images / "a.tif", np.zeros((32, 32), np.uint8))
    write_tiff(probs / "a_prob.tif", np.full((6, 32, 32), 0.5, np.float32))  # sums to 3
    out.mkdir()
    (out / "a_labels.tif").write_bytes(b"previous result")
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "inference.json"),
           "--dataset_dir", str(images), "--prob_dir", str(probs), "--output_dir", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0
    assert "a_prob.tif: probabilities must sum to 1" in proc.stderr
    assert (out / "a_labels.tif").read_bytes() == b"previous result"
    write_tiff(probs / "a_prob.tif", np.full((6, 32, 32), 1 / 6, np.float32))
    write_tiff(probs / "b_prob.tif", np.full((6, 32, 32), 1 / 6, np.float32))
    with pytest.raises(Exception) as err:
        run_bundle(["inference.json"], dataset_dir=str(images), prob_dir=str(probs), output_dir=str(out))
    assert "for the probability file(s) ['b_prob.tif']" in error_chain(err)
    (probs / "b_prob.tif").unlink()
    write_tiff(probs / "a_prob.tif", np.full((6, 30, 32), 1 / 6, np.float32))
    with pytest.raises(Exception) as err:
        run_bundle(["inference.json"], dataset_dir=str(images), prob_dir=str(probs), output_dir=str(out))
    assert "a_prob.tif: probabilities of shape (6, 30, 32) do not fit the image" in error_chain(err)


def test_unknown_keys_are_refused(tmp_path):
    with pytest.raises(Exception) as err:
        run_bundle(["inference.json"], output_dir=str(tmp_path), prob_dri="x")
    assert "did you mean 'prob_dir'" in error_chain(err)
    with pytest.raises(Exception) as err:
        run_bundle(["inference.json"], output_dir=str(tmp_path), **{"crf_params#sxy": 3})
    assert "unknown CRF parameter(s) ['sxy']" in error_chain(err)


def test_evaluate_before_and_after_with_mlflow(labelled, tmp_path):
    run_bundle(
        ["inference.json", "evaluate.json"], run_id="evaluating", output_dir=str(tmp_path), dataset_kind="folder",
        dataset_dir=str(labelled), eval_indices=[0, 1], prob_dir=str(labelled / "probs"),
        mlflow_experiment_name="tests", **{"crf_params#smoothness_sigma": 1.0, "crf_params#appearance_sigma": 4.0,
                                           "crf_params#intensity_sigma": 0.1},
    )  # fmt: skip
    eval_dir = tmp_path / "crf_eval"
    result = json.loads((eval_dir / "crf_metrics.json").read_text())
    m = result["metrics"]
    assert set(m) == {f"{w}_{k}" for w in ("before", "after") for k in ("accuracy", "macro_f1", "macro_ap", "kappa")}
    assert m["after_macro_f1"] > m["before_macro_f1"] + 0.05  # noisy per-pixel probabilities: the CRF must help
    assert result["params"]["appearance_sigma"] == 4.0
    rows = (eval_dir / "crf_class_scores.csv").read_text().splitlines()
    assert rows[0] == "class,f1_before,f1_after" and len(rows) == 7
    from PIL import Image

    with Image.open(eval_dir / "crf_before_after.png") as pic:
        assert pic.size == (4 * 96 + 3 * 4, 96)
    for i in range(2):
        assert tifffile.imread(eval_dir / f"{i}_labels.tif").shape == (96, 96)
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert run.data.metrics["after_macro_f1"] == pytest.approx(m["after_macro_f1"])
    assert "before_f1_mitochondrion" in run.data.metrics and run.data.params["crf/backend"] == "native"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "crf")} >= {"crf/crf_before_after.png", "crf/crf_metrics.json"}


@pytest.mark.skipif(not have_pydensecrf(), reason="pydensecrf (pydensecrf2) is not installed: `bash scripts/setup.sh crf`")
def test_pydensecrf_backend_through_the_bundle(tmp_path):
    run_bundle(["inference.json"], output_dir=str(tmp_path / "pd"), backend="pydensecrf")
    run_bundle(["inference.json"], output_dir=str(tmp_path / "nat"))
    a = tifffile.imread(tmp_path / "pd" / "phantom_2026_labels.tif")
    b = tifffile.imread(tmp_path / "nat" / "phantom_2026_labels.tif")
    assert (a == b).mean() > 0.98


def test_metadata_and_fitted_override():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(ROOT / "configs" / "metadata_schema.json"))
    fitted = sorted(CONFIGS.glob("fitted_*.json"))
    for path in fitted:
        CRFParams.from_dict(json.loads(path.read_text())["crf_params"])


@pytest.mark.slow
def test_out_of_core_crf_after_out_of_core_organelles(tmp_path):
    """The organelle bundle's inference_large.json writes NAME.ome.zarr; this bundle's
    inference_large.json refines it block by block (64 x 64 pixels, so kernels cross block
    borders): the labels of the in-memory CRF on the same probabilities but for a few pixels
    (the lattice filter of each block approximates alike, not identically: 99.86% measured
    whatever the halo)."""
    import zarr
    from monai.bundle import run

    from cseg_monai.data.datasets.organelles import scale_image

    root = Path(write_organelle_dataset(tmp_path / "data", n_slices=2, shape=(256, 256), seed=11))
    stack = np.stack([tifffile.imread(root / "images" / f"{i}.tif") for i in range(2)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    organelles = BUNDLES / "fibsem_organelle_centervoxel_segmentation" / "configs"
    run(run_id="run", config_file=[str(organelles / "inference.json"), str(organelles / "inference_large.json")],
        logging_file=str(organelles / "logging.conf"), dataset_dir=str(tmp_path / "stack.tif"), output_dir=str(tmp_path / "probs"),
        progress_bar=False, scheduler="synchronous", prob_dtype="float32", block_shape=[1, 128, 128], chunks=[1, 64, 64])  # fmt: skip
    run_bundle(["inference.json", "inference_large.json"], dataset_dir=str(tmp_path / "stack.tif"), prob_dir=str(tmp_path / "probs"),
               output_dir=str(tmp_path / "crf"), scheduler="synchronous", block_shape=[1, 64, 64], chunks=[1, 64, 64])  # fmt: skip
    refined = zarr.open_group(tmp_path / "crf" / "stack.ome.zarr", mode="r")["labels/segmentation/0"][:]
    prob = zarr.open_group(tmp_path / "probs" / "stack.ome.zarr", mode="r")["0"][:]
    params = json.loads((CONFIGS / "inference.json").read_text())["crf_params"]
    crf = DenseCRF(CRFParams.from_dict(params), device="cpu")
    expected = np.stack([crf.labels(prob[:, z], scale_image(stack[z])) for z in range(2)])
    assert (refined == expected).mean() > 0.995
    assert (refined != prob.argmax(0)).mean() > 0.001  # the CRF changed something
    summary = json.loads((tmp_path / "crf" / "run_summary.json").read_text())
    assert summary["n_failed"] == 0 and summary["succeeded"][0]["blocks"] == 32
