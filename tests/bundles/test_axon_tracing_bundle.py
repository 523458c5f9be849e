"""The axon tracing bundle end to end on tube phantoms, in-process.

Train (D-LinkNet on section patches, tracing scores on the validation volume, MLflow with the
tracks picture, resume), evaluate (probabilities, ids and tracks written), inference on the
sample volume with the shipped weights and over a folder with a bad file, anchors by file, the
folder data kind, and a two-process torchrun on CPU.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cseg_monai.data.tube_phantom import make_tube_phantom

from conftest import BUNDLES, bundle_workflow, error_chain, run_workflow, torchrun_training

BUNDLE = BUNDLES / "em_axon_tracing"
CONFIGS = BUNDLE / "configs"
TINY = {
    "phantom_shape": [8, 96, 96],
    "patch_size": [64, 64],
    "n_train_phantoms": 1,
    "num_samples": 2,
    "batch_size": 2,
    "progress_bar": False,
    "mlflow_experiment_name": "tests",
}


def _workflow(configs, workflow_type, **override):
    return bundle_workflow(CONFIGS, configs, workflow_type, **override)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("axons")
    wf = run_workflow(_workflow(["train.json"], "train", output_dir=str(out), max_epochs=2, val_interval=1, **TINY))
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    trainer = wf.parser.get_parsed_content("train#trainer")
    result = {"out": out, "metrics": dict(evaluator.state.metrics), "epoch": trainer.state.epoch}
    wf.finalize()
    return result


def test_training_scores_tracing_and_logs_the_tracks_picture(trained):
    import mlflow

    out, metrics = trained["out"], trained["metrics"]
    assert {"val_link_f1", "val_link_precision", "val_link_recall", "val_arand", "val_splits", "val_merges", "val_dice"} <= set(metrics)
    assert 0.0 <= metrics["val_link_f1"] <= 1.0 and 0.0 <= metrics["val_dice"] <= 1.0
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "checkpoint_final.pt").is_file()
    assert list((out / "plots").glob("val_overlay_epoch*.png"))  # the tracks picture
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert len(runs) == 1 and {"train_loss", "val_link_f1", "val_arand"} <= set(runs[0].data.metrics)


def test_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    out = tmp_path / "resume"
    shutil.copytree(trained["out"], out)
    wf = run_workflow(_workflow(["train.json"], "train", output_dir=str(out), max_epochs=3, val_interval=1, resume=True, mlflow_enabled=False, **TINY))
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 3 and trainer.state.iteration == 3  # one phantom, batch of 2 crops: one iteration an epoch


def test_evaluate_writes_probabilities_ids_and_tracks(trained):
    out = trained["out"]
    run_workflow(_workflow(["train.json", "evaluate.json"], "eval", output_dir=str(out), ckpt_path=str(out / "models" / "model.pt"), **TINY))
    prob = tifffile.imread(out / "eval" / "phantom_1000_prob.tif")
    ids = tifffile.imread(out / "eval" / "phantom_1000_labels.tif")
    assert prob.shape == ids.shape == (8, 96, 96) and ids.dtype == np.uint32 and 0 <= prob.min() <= prob.max() <= 1
    with open(out / "eval" / "phantom_1000_tracks.csv") as f:
        rows = list(csv.DictReader(f))
    assert {int(r["id"]) for r in rows} == set(np.unique(ids[ids > 0]).tolist())
    assert "val_link_f1" in (out / "eval" / "metrics.csv").read_text()


def test_inference_on_the_sample_volume_with_anchors_and_a_folder_with_a_bad_file(tmp_path):
    if not (BUNDLE / "models" / "model.pt").is_file():
        pytest.skip("no shipped model")
    (tmp_path / "anchors").mkdir()
    (tmp_path / "anchors" / "tubes_2026_anchors.csv").write_text("section,y,x,id\n")  # read, empty: no constraint
    out = tmp_path / "out"
    run_workflow(_workflow(["inference.json"], "infer", output_dir=str(out), anchors_dir=str(tmp_path / "anchors")))
    prob = tifffile.imread(out / "tubes_2026_prob.tif")
    ids = tifffile.imread(out / "tubes_2026_labels.tif")
    assert prob.shape == ids.shape == (16, 192, 192) and ids.dtype == np.uint32 and ids.max() >= 1
    assert (out / "tubes_2026_tracks.csv").read_text().startswith("id,section")
    folder = tmp_path / "folder"
    folder.mkdir()
    tifffile.imwrite(folder / "good.tif", tifffile.imread(BUNDLE / "sample_data" / "tubes_2026.tif")[:4, :96, :96], photometric="minisblack")
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    with pytest.raises(Exception) as excinfo:
        run_workflow(_workflow(["inference.json"], "infer", dataset_dir=str(folder), output_dir=str(tmp_path / "f")))
    assert "broken.tif" in error_chain(excinfo)
    summary = json.loads((tmp_path / "f" / "run_summary.json").read_text())
    assert [Path(s["file"]).name for s in summary["succeeded"]] == ["good.tif"]
    assert (tmp_path / "f" / "good_labels.tif").is_file() and (tmp_path / "f" / "good_tracks.csv").is_file()


def test_the_folder_data_kind_trains(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    for k in range(2):
        image, ids = make_tube_phantom((8, 96, 96), n_tubes=5, seed=40 + k)
        tifffile.imwrite(data / "images" / f"v{k}.tif", image, photometric="minisblack")
        tifffile.imwrite(data / "labels" / f"v{k}.tif", ids.astype(np.uint16), photometric="minisblack")
    settings = {**TINY, "dataset_dir": str(data), "train_indices": [0], "val_indices": [1], "mlflow_enabled": False}
    wf = run_workflow(_workflow(["train.json", "data_folder.json"], "train", output_dir=str(tmp_path / "o"), max_epochs=1, val_interval=1, **settings))
    assert "val_link_f1" in wf.parser.get_parsed_content("validate#evaluator").state.metrics
    (data / "labels" / "v1.tif").unlink()
    with pytest.raises(Exception) as excinfo:
        run_workflow(_workflow(["train.json", "data_folder.json"], "train", output_dir=str(tmp_path / "p"), **settings))
    assert "no label stack for v1.tif" in error_chain(excinfo)


@pytest.mark.slow
def test_multi_gpu_override_with_torchrun_two_cpu_processes_logs_one_mlflow_run(tmp_path):
    import mlflow

    out = tmp_path / "ddp"
    overrides = {**TINY, "mlflow_experiment_name": "ddp", "max_epochs": 1, "val_interval": 1, "n_train_phantoms": 2, "num_samples": 1, "batch_size": 1}
    torchrun_training(CONFIGS, ["train.json", "multi_gpu_train.json"], out, tmp_path, **overrides)
    state = torch.load(out / "models" / "model.pt", map_location="cpu")
    assert not any(k.startswith("module.") for k in state)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1 and {"train_loss", "val_link_f1"} <= set(runs[0].data.metrics)
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")] == [1]
