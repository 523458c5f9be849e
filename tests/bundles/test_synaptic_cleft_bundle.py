"""The synaptic cleft bundle end to end on phantom clefts, in-process.

Train (balanced focal loss, EM augmentations, CREMI validation, MLflow, resume), the res_unet_plus
and BCE + Dice overrides, evaluate (16-fold TTA, prob and id TIFFs), inference on the sample volume
with the shipped weights and over a folder with a bad file, a shape check that names the nearest
valid patch, the real VNC sections as data, and a two-process torchrun on CPU.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from cseg_monai.networks import ResUNet3D

from conftest import BUNDLES, bundle_workflow, error_chain, require_data, run_workflow, torchrun_training

BUNDLE = BUNDLES / "em_synaptic_cleft_detection"
CONFIGS = BUNDLE / "configs"
TINY = {
    "phantom_shape": [8, 96, 96],
    "patch_size": [8, 64, 64],
    "network_def#filters": [4, 8, 8, 8, 8],
    "n_train_phantoms": 1,
    "num_samples": 2,
    "batch_size": 2,
    "progress_bar": False,
    "mlflow_experiment_name": "tests",
}
PHANTOM = ["train.json", "data_phantom.json"]


def _workflow(configs, workflow_type, **override):
    return bundle_workflow(CONFIGS, configs, workflow_type, **override)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("clefts")
    wf = run_workflow(_workflow(PHANTOM, "train", output_dir=str(out), max_epochs=2, val_interval=1, **TINY))
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    trainer = wf.parser.get_parsed_content("train#trainer")
    return {"out": out, "metrics": dict(evaluator.state.metrics), "best": evaluator.state.best_metric, "epoch": trainer.state.epoch}


def test_training_logs_cremi_scores_and_keeps_the_lowest(trained):
    import mlflow

    out, metrics = trained["out"], trained["metrics"]
    assert {"val_cremi_score", "val_adf", "val_adgt", "val_voxel_f1", "val_detection_f1"} <= set(metrics)
    assert metrics["val_cremi_score"] == pytest.approx((metrics["val_adf"] + metrics["val_adgt"]) / 2)
    assert trained["best"] <= metrics["val_cremi_score"]  # lower is better: the best is the lowest seen
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "checkpoint_final.pt").is_file()
    assert sorted(p.name for p in (out / "plots").glob("*.png"))
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert len(runs) == 1 and {"train_loss", "val_cremi_score", "val_detection_f1"} <= set(runs[0].data.metrics)


def test_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    import shutil

    out = tmp_path / "resume"
    shutil.copytree(trained["out"], out)
    wf = run_workflow(_workflow(PHANTOM, "train", output_dir=str(out), max_epochs=3, val_interval=1, resume=True, **TINY))
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 3 and trainer.state.iteration == 3  # one more epoch of one iteration


@pytest.mark.parametrize("override", [["res_unet_plus.json"], ["loss_bce_dice.json"]])
def test_network_and_loss_overrides_train(override, tmp_path):
    wf = run_workflow(_workflow(PHANTOM + override, "train", output_dir=str(tmp_path), max_epochs=1, val_interval=1, mlflow_enabled=False, **TINY))
    name = type(wf.parser.get_parsed_content("network")).__name__
    loss = type(wf.parser.get_parsed_content("loss")).__name__
    assert name == ("ResUNetPlus3D" if override == ["res_unet_plus.json"] else "ResUNet3D")
    assert loss == ("BalancedBCEDiceLoss" if override == ["loss_bce_dice.json"] else "BalancedBinaryFocalLoss")
    assert "val_cremi_score" in wf.parser.get_parsed_content("validate#evaluator").state.metrics


def test_evaluate_with_16_fold_tta_writes_probabilities_and_cleft_ids(trained):
    out = trained["out"]
    wf = run_workflow(_workflow(PHANTOM + ["evaluate.json"], "eval", output_dir=str(out), ckpt_path=str(out / "models" / "model.pt"), **TINY))
    assert wf.parser.get_parsed_content("validate#inferer").n_transforms == 16
    prob = tifffile.imread(out / "eval" / "phantom_1000_prob.tif")
    ids = tifffile.imread(out / "eval" / "phantom_1000_labels.tif")
    assert prob.shape == ids.shape == (8, 96, 96) and prob.dtype == np.float32 and ids.dtype == np.uint32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    assert ((ids > 0) == (prob > 0.5)).all()
    assert "val_cremi_score" in (out / "eval" / "metrics.csv").read_text()


@pytest.mark.slow
def test_inference_on_the_sample_volume_and_a_folder_with_a_bad_file(tmp_path):
    if not (BUNDLE / "models" / "model.pt").is_file():
        pytest.skip("no shipped model")
    out = tmp_path / "out"
    wf = run_workflow(_workflow(["inference.json"], "infer", output_dir=str(out), tta_transforms=2))
    prob = tifffile.imread(out / "cleft_phantom_2026_prob.tif")
    ids = tifffile.imread(out / "cleft_phantom_2026_labels.tif")
    assert prob.shape == (8, 160, 160) and ids.dtype == np.uint32 and 0 <= prob.min() <= prob.max() <= 1
    assert wf is not None
    folder = tmp_path / "folder"
    folder.mkdir()
    tifffile.imwrite(folder / "good.tif", tifffile.imread(BUNDLE / "sample_data" / "cleft_phantom_2026.tif")[:8, :96, :96])
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    with pytest.raises(Exception) as excinfo:
        run_workflow(_workflow(["inference.json"], "infer", dataset_dir=str(folder), output_dir=str(tmp_path / "f"), tta_transforms=1))
    assert "broken.tif" in error_chain(excinfo)
    summary = json.loads((tmp_path / "f" / "run_summary.json").read_text())
    assert [Path(s["file"]).name for s in summary["succeeded"]] == ["good.tif"]
    assert (tmp_path / "f" / "good_labels.tif").is_file()


def test_out_of_core_inference_equals_inference_json_with_16_fold_tta(tmp_path):
    """inference_large.json (exact 1st / 99th percentiles, the 16 flips and transposes, cleft ids joined
    across blocks) against inference.json on a crop of the sample volume cut into 12 blocks."""
    crop = tifffile.imread(BUNDLE / "sample_data" / "cleft_phantom_2026.tif")[:, :70, :60]
    crop = np.concatenate([crop, crop[::-1, :, ::-1]])  # 16 sections: two windows along z
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "vol.tif", crop, photometric="minisblack")
    torch.manual_seed(1)
    small = {"patch_size": [8, 32, 32], "network_def#filters": [4, 4, 4, 4, 4], "ckpt_path": str(tmp_path / "net.pt"), "progress_bar": False}
    torch.save(ResUNet3D(filters=(4, 4, 4, 4, 4), input_shape=(8, 32, 32)).state_dict(), tmp_path / "net.pt")
    mem = _workflow(["inference.json"], "infer", dataset_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "probe"), **small)
    run_workflow(mem)
    prob = tifffile.imread(tmp_path / "probe" / "vol_prob.tif")
    threshold = float(np.quantile(prob, 0.85))  # random weights: a threshold that leaves several clefts
    settings = {**small, "threshold": threshold, "min_cleft_size": 3}
    run_workflow(_workflow(["inference.json"], "infer", dataset_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "mem"), **settings))
    big = _workflow(["inference.json", "inference_large.json"], "infer", dataset_dir=str(tmp_path / "in" / "vol.tif"), output_dir=str(tmp_path / "big"),
                    scheduler="synchronous", prob_dtype="float32", block_shape=[8, 32, 32], chunks=[4, 16, 16], **settings)  # fmt: skip
    big.initialize()
    big.run()
    root = zarr.open_group(tmp_path / "big" / "vol.ome.zarr", mode="r")
    assert np.abs(root["0"][0] - tifffile.imread(tmp_path / "mem" / "vol_prob.tif")).max() < 1e-5
    ids = tifffile.imread(tmp_path / "mem" / "vol_labels.tif")
    assert ids.max() >= 3
    assert np.array_equal(root["labels/segmentation/0"][:], ids)  # the same ids, numbered alike
    summary = json.loads((tmp_path / "big" / "run_summary.json").read_text())
    assert summary["succeeded"][0]["components"] == int(ids.max()) and summary["succeeded"][0]["blocks"] == 12


def test_a_patch_that_does_not_fit_the_net_is_refused_with_the_nearest_valid_one(tmp_path):
    wf = _workflow(PHANTOM, "train", output_dir=str(tmp_path), **{**TINY, "patch_size": [31, 204, 204]})
    with pytest.raises(Exception) as excinfo:
        wf.initialize()
        wf.parser.get_parsed_content("network_def")
    assert "nearest valid shape is (32, 208, 208)" in error_chain(excinfo)


def test_real_vnc_sections_as_training_and_validation_data(tmp_path):
    root = require_data("drosophila_vnc")
    wf = _workflow(["train.json"], "train", dataset_dir=str(root), output_dir=str(tmp_path))
    wf.initialize()
    train = wf.parser.get_parsed_content("train#datalist")
    val = wf.parser.get_parsed_content("validate#datalist")
    assert train[0]["sections"] == list(range(10)) and val[0]["sections"] == [10, 11, 12, 13, 14]
    item = wf.parser.get_parsed_content("validate#preprocessing")(val[0])
    assert tuple(item["image"].shape) == (1, 5, 1024, 1024) and 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert 0.001 < float(item["label"].float().mean()) < 0.02


def test_the_epfl_psd_override_trains_on_licence_clean_real_slices_and_names_each_slice(tmp_path):
    root = require_data("epfl_ca1_multiclass")
    tiny = {k: v for k, v in TINY.items() if k not in ("phantom_shape", "n_train_phantoms")}
    configs = ["train.json", "data_epfl_psd.json"]
    overrides = {**tiny, "patch_size": [2, 64, 64], "train_sections": [0], "val_sections": [20, 21], "max_epochs": 1, "val_interval": 1}
    wf = run_workflow(_workflow(configs, "train", dataset_dir=str(root), output_dir=str(tmp_path), **overrides))
    val = wf.parser.get_parsed_content("validate#datalist")
    assert [v["slice_id"] for v in val] == ["training0105", "training0118"] and {v["depth"] for v in val} == {2}
    metrics = wf.parser.get_parsed_content("validate#evaluator").state.metrics
    assert np.isfinite(metrics["val_adf"]) and 0.0 <= metrics["val_voxel_f1"] <= 1.0
    best = str(tmp_path / "models" / "model.pt")
    ev = run_workflow(_workflow([*configs, "evaluate.json"], "eval", dataset_dir=str(root), output_dir=str(tmp_path), ckpt_path=best, val_tta=2, **overrides))
    written = sorted(p.name for p in (tmp_path / "eval").glob("*_prob.tif"))
    assert written == ["training0105_prob.tif", "training0118_prob.tif"], "each validation slice writes its own files"
    assert tifffile.imread(tmp_path / "eval" / written[0]).shape == (2, 768, 1024)
    saved = (tmp_path / "eval" / "metrics.csv").read_text()
    assert "val_cremi_score" in saved and ev is not None


@pytest.mark.slow
def test_multi_gpu_override_with_torchrun_two_cpu_processes_logs_one_mlflow_run(tmp_path):
    import mlflow

    out = tmp_path / "ddp"
    overrides = {**TINY, "mlflow_experiment_name": "ddp", "max_epochs": 1, "val_interval": 1, "n_train_phantoms": 2, "num_samples": 1, "batch_size": 1}
    torchrun_training(CONFIGS, ["train.json", "data_phantom.json", "multi_gpu_train.json"], out, tmp_path, **overrides)
    state = torch.load(out / "models" / "model.pt", map_location="cpu")
    assert not any(k.startswith("module.") for k in state)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1 and {"train_loss", "val_cremi_score"} <= set(runs[0].data.metrics)
    # 2 phantoms, one per process, batches of 1: one iteration each, logged by rank 0 alone
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")] == [1]


@pytest.mark.slow
def test_experiment_script_scores_given_weights_on_epfl_and_vnc_in_parts(tmp_path):
    """--score_weights: threshold tuned on EPFL validation; EPFL test, VNC with 2- and 8-section windows, TTA on the better; reruns measure nothing."""
    require_data("epfl_ca1_multiclass")
    require_data("drosophila_vnc")
    ckpt = tmp_path / "tiny.pt"
    torch.save(ResUNet3D(filters=(4, 8, 8, 8, 8), input_shape=(8, 64, 64)).state_dict(), ckpt)
    script = BUNDLES.parent / "scripts" / "experiments" / "synaptic_clefts.py"
    cmd = [sys.executable, str(script), "--quick", "--configs", "--score_weights", f"tiny={ckpt}", "--tta", "2", "--json", str(tmp_path / "r.json"),
           "--work", str(tmp_path / "w"), "--epfl_slices", "22", "--vnc_sections", "10", "11", "--weights_picture", str(tmp_path / "tiny")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "r.json").read_text())["weights"]["tiny"]
    assert set(record) == {"checkpoint", "sections", "tuned", "epfl_val", "epfl_test", "vnc_val_z2", "vnc_val_z8"}
    assert record["sections"]["epfl_test"] == [22] and record["sections"]["vnc_val_z8"] == [10, 11]

    def cremi(scores):  # None: infinite (an empty prediction), as strict JSON stores it
        return math.inf if scores["val_cremi_score"] is None else scores["val_cremi_score"]

    tuned, grid = record["tuned"], record["tuned"]["grid"]
    chosen = next(g for g in grid if (g["threshold"], g["min_cleft_size"]) == (tuned["threshold"], tuned["min_cleft_size"]))
    assert len(grid) == 18 and cremi(chosen) == min(cremi(g) for g in grid)
    # the scores recomputed from the written probabilities at 0.5 / 0 are the evaluator's own
    at_default = next(g for g in grid if g["threshold"] == 0.5 and g["min_cleft_size"] == 0)
    assert cremi(at_default) == pytest.approx(cremi(record["epfl_val"]["tta1"]), abs=1e-3)
    best = min(("vnc_val_z2", "vnc_val_z8"), key=lambda k: cremi(record[k]["tta1"]))
    assert {"tta2", "tta2_tuned"} <= set(record[best]) and all("tta2" not in record[k] for k in ("epfl_test", "vnc_val_z2", "vnc_val_z8") if k != best)
    assert [p.name for p in (tmp_path / "w" / "tiny" / "epfl_test").glob("*_prob.tif")] == ["training0135_prob.tif"]
    assert tifffile.imread(next((tmp_path / "w" / "tiny" / "vnc_val_z8").glob("*_prob.tif"))).shape == (2, 1024, 1024)
    assert (tmp_path / "tiny_vnc_val.png").is_file() and (tmp_path / "tiny_epfl_test.png").is_file()
    written = (tmp_path / "r.json").read_text()
    json.loads(written, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    # a rerun without TTA measures nothing and draws from the probabilities without TTA
    again = subprocess.run([*cmd[:7], "1", *cmd[8:-1], str(tmp_path / "again")], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[tiny]" not in again.stdout and (tmp_path / "again_vnc_val.png").is_file()
    assert json.loads((tmp_path / "r.json").read_text())["weights"] == json.loads(written)["weights"]
    other = subprocess.run([*cmd[:-4], "12", "13", *cmd[-2:]], capture_output=True, text=True, timeout=300)
    assert other.returncode != 0 and "was measured with" in other.stderr and "--redo" in other.stderr
    bad = subprocess.run([*cmd[:5], f"tiny={tmp_path / 'missing.pt'}", *cmd[6:]], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "existing checkpoint file" in bad.stderr


@pytest.mark.slow
def test_experiment_script_runs_in_parts_and_draws_its_picture(tmp_path):
    """scripts/experiments/synaptic_clefts.py --quick: two configurations on phantoms, the JSON written per configuration, a rerun skips them."""
    script = BUNDLES.parent / "scripts" / "experiments" / "synaptic_clefts.py"
    cmd = [sys.executable, str(script), "--quick", "--steps", "1", "--tta", "2", "--json", str(tmp_path / "r.json"), "--work", str(tmp_path / "w"),
           "--picture", str(tmp_path / "p.png")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert sorted(result["configs"]) == ["res_unet_bce_dice", "res_unet_focal"]
    for record in result["configs"].values():
        assert record["steps"] == 1 and set(record["tta1"]) >= {"val_cremi_score", "val_detection_f1"} and "tta2" in record
    assert (tmp_path / "p.png").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and again.stdout.count("already measured") == 2
