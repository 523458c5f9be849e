"""The self-supervised pretraining bundle end to end, in-process, on phantom EM slices (a folder pool).

Train centre-region regression (MLflow: losses, reconstruction pictures, the exported backbone),
resume it, the masked-VAE override, evaluate, inference (per-file pretext scores, a bad file
skipped), and the organelle bundle started from the exported backbone (``--pretrained_backbone``,
frozen or tuned; a backbone that does not fit is refused by key before anything is written).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import tifffile
import torch

from cseg_monai.common.errors import exception_chain
from cseg_monai.data.phantom import make_phantom, write_organelle_dataset
from cseg_monai.workflows import FolderRunError

from conftest import BUNDLES, bundle_workflow, error_chain, require_data, run_workflow

BUNDLE = BUNDLES / "em_selfsupervised_pretraining"
CONFIGS = BUNDLE / "configs"
ORGANELLE_CONFIGS = BUNDLES / "fibsem_organelle_centervoxel_segmentation" / "configs"
TINY = {"pool": "folder", "backbone": "4_conv", "batch_size": 16, "progress_bar": False, "mlflow_experiment_name": "tests", "val_interval": 1}


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    for seed in range(3):
        tifffile.imwrite(root / f"slice_{seed}.tif", make_phantom((96, 96), seed=seed).image)
    return root


@pytest.fixture(scope="module")
def trained(pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    wf = run_workflow(bundle_workflow(CONFIGS, ["train.json"], "train", dataset_dir=str(pool), output_dir=str(out), max_epochs=2, **TINY))
    trainer = wf.parser.get_parsed_content("train#trainer")
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    result = {"out": out, "iterations": int(trainer.state.iteration), "metrics": dict(evaluator.state.metrics),
              "patches": len(wf.parser.get_parsed_content("train#patches"))}  # fmt: skip
    wf.finalize()
    return result


def test_training_covers_the_pool_and_exports_the_backbone_to_mlflow(trained):
    out = trained["out"]
    # two training slices of 96 x 96, 32 x 32 patches at stride 16: 5 x 5 per slice, all of them each epoch
    assert trained["patches"] == 2 * 25 and trained["iterations"] == 2 * -(-50 // 16)
    assert np.isfinite(trained["metrics"]["val_psnr"]) and np.isfinite(trained["metrics"]["val_mse"])
    content = torch.load(out / "models" / "backbone.pt", weights_only=True)
    assert content["meta"]["pretext"] == "centre_region" and content["meta"]["net"] == "4_conv" and content["meta"]["radius"] == 4
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert {"train_loss", "val_psnr", "val_mse"} <= set(run.data.metrics)
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"backbone", "overlays", "plots"} <= logged
    assert (out / "plots" / "val_overlay_epoch0002.png").is_file()


def test_resume_continues_from_the_last_checkpoint(trained, pool):
    wf = run_workflow(bundle_workflow(CONFIGS, ["train.json"], "train", dataset_dir=str(pool), output_dir=str(trained["out"]),
                              max_epochs=3, resume=True, **TINY))  # fmt: skip
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 3 and trainer.state.iteration == 3 * -(-50 // 16), "epochs 1-2 must not run again"
    wf.finalize()


def test_masked_vae_override_trains_and_exports(pool, tmp_path):
    wf = run_workflow(bundle_workflow(CONFIGS, ["train.json", "vae.json"], "train", dataset_dir=str(pool), output_dir=str(tmp_path),
                              max_epochs=1, latent_dim=8, decoder_hidden=32, **TINY))  # fmt: skip
    metrics = dict(wf.parser.get_parsed_content("validate#evaluator").state.metrics)
    wf.finalize()
    assert np.isfinite(metrics["val_psnr"])
    assert torch.load(tmp_path / "models" / "backbone.pt", weights_only=True)["meta"]["pretext"] == "masked_vae"
    # inference_vae.json scores the VAE's reconstructions against the patch-mean baseline
    wf = bundle_workflow(CONFIGS, ["inference.json", "inference_vae.json"], "infer", dataset_dir=str(pool), output_dir=str(tmp_path / "infer"),
                         backbone="4_conv", latent_dim=8, decoder_hidden=32, ckpt_path=str(tmp_path / "models" / "model.pt"), progress_bar=False)  # fmt: skip
    wf.initialize()
    wf.run()
    scores = json.loads((tmp_path / "infer" / "pretext_scores.json").read_text())
    assert len(scores) == 3 and all(row["n_patches"] == 9 and np.isfinite(row["baseline_mse"]) for row in scores.values())


def test_evaluate_scores_the_checkpoint(trained, pool, tmp_path):
    wf = run_workflow(bundle_workflow(CONFIGS, ["train.json", "evaluate.json"], "eval", dataset_dir=str(pool), output_dir=str(tmp_path),
                              ckpt_path=str(trained["out"] / "models" / "model.pt"), **TINY))  # fmt: skip
    wf.finalize()
    metrics = dict(line.split(",") for line in (tmp_path / "eval" / "metrics.csv").read_text().splitlines())
    assert {"val_psnr", "val_mse"} <= set(metrics) and np.isfinite(float(metrics["val_mse"]))


def test_inference_writes_scores_and_skips_a_bad_file(trained, pool, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for f in pool.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "broken.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    wf = bundle_workflow(CONFIGS, ["inference.json"], "infer", dataset_dir=str(folder), output_dir=str(out), backbone="4_conv",
                         ckpt_path=str(trained["out"] / "models" / "model.pt"), progress_bar=False)  # fmt: skip
    wf.initialize()
    with pytest.raises(Exception) as excinfo:
        wf.run()
    assert "broken.tif" in error_chain(excinfo) and any(isinstance(e, FolderRunError) for e in exception_chain(excinfo.value))
    scores = json.loads((out / "pretext_scores.json").read_text())
    assert len(scores) == 3 and all(np.isfinite(s["psnr"]) and np.isfinite(s["baseline_psnr"]) for s in scores.values())
    assert all((out / s["picture"]).is_file() for s in scores.values())
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["n_failed"] == 1 and "broken.tif" in summary["failed"][0]["file"]


@pytest.mark.parametrize("freeze", [True, False])
def test_organelle_bundle_starts_from_the_pretrained_backbone(trained, tmp_path, freeze):
    data = write_organelle_dataset(tmp_path / "organelles", n_slices=3, shape=(96, 96), seed=5)
    backbone = trained["out"] / "models" / "backbone.pt"
    wf = bundle_workflow(ORGANELLE_CONFIGS, ["train.json"], "train", dataset_dir=str(data), dataset_kind="folder", output_dir=str(tmp_path / "out"),
                         backbone="4_conv", train_indices=[0, 1], val_indices=[2], grid_size=2, num_samples=2, batch_size=2,
                         val_shifts=[[0, 0]], max_epochs=1, progress_bar=False, mlflow_experiment_name="tests",
                         pretrained_backbone=str(backbone), freeze_backbone=freeze)  # fmt: skip
    run_workflow(wf)
    net = wf.parser.get_parsed_content("network")
    pretrained = torch.load(backbone, weights_only=True)["backbone"]
    same = all(torch.equal(net.backbone.state_dict()[k].cpu(), v) for k, v in pretrained.items())
    wf.finalize()
    assert same is freeze, "frozen: the backbone is exactly the pretrained one; tuned: training moved it"


def test_a_backbone_that_does_not_fit_is_refused_before_training(trained, tmp_path):
    data = write_organelle_dataset(tmp_path / "organelles", n_slices=2, shape=(64, 64), seed=6)
    out = tmp_path / "out"
    wf = bundle_workflow(ORGANELLE_CONFIGS, ["train.json"], "train", dataset_dir=str(data), dataset_kind="folder", output_dir=str(out),
                         train_indices=[0], val_indices=[1], progress_bar=False, mlflow_experiment_name="tests",
                         pretrained_backbone=str(trained["out"] / "models" / "backbone.pt"))  # fmt: skip
    with pytest.raises(Exception) as excinfo:
        wf.initialize()
        wf.run()
    message = error_chain(excinfo)
    assert "does not fit the configured network" in message and "backbone." in message and "'net': '4_conv'" in message
    assert not (out / "models").exists()


@pytest.mark.slow
def test_label_efficiency_quick_runs_one_point_end_to_end(tmp_path):
    """``--quick``: 1 EPFL slice, scratch and tuned from the shipped backbone, a few steps; the JSON and the picture."""
    require_data("epfl_ca1_multiclass", "epfl_train", "slices")
    script = BUNDLES.parent / "scripts" / "experiments" / "label_efficiency.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--json", str(tmp_path / "le.json"), "--work", str(tmp_path / "work"),
                             "--picture", str(tmp_path / "le.png")], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "le.json").read_text())
    point = results["epfl"]["1"]
    assert set(point) == {"scratch", "tuned"} and all(len(point[k]["runs"]) == 1 for k in point)
    for init in point.values():
        run = init["runs"][0]
        assert run["iterations"] == 4 and len(run["slices"]) == 1 and 0 <= run["val_macro_f1"] <= 1
        assert init["mean"] == pytest.approx(run["val_macro_f1"], abs=1e-4)
    assert (tmp_path / "le.png").stat().st_size > 1000
