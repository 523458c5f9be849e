"""The self-supervised pretraining bundle end to end, in-process, on phantom EM slices (a folder pool).

Train centre-region regression (MLflow: losses, reconstruction pictures, the exported backbone),
resume it, the masked-VAE override, evaluate, inference (per-file pretext scores, a bad file
skipped), and the organelle bundle started from the exported backbone (``--pretrained_backbone``,
frozen or tuned; a backbone that does not fit is refused by key before anything is written).
Masked image modelling (``mim_unet2d.json``) trains a MONAI UNet on the same pool, and the
membrane bundle starts from its encoder.
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
from monai.networks.nets import UNet

from cseg_monai.common.errors import exception_chain
from cseg_monai.data.phantom import make_phantom, write_organelle_dataset
from cseg_monai.networks import backbone_of, load_pretrained_backbone
from cseg_monai.workflows import FolderRunError

from conftest import BUNDLES, bundle_workflow, error_chain, require_data, run_workflow

BUNDLE = BUNDLES / "em_selfsupervised_pretraining"
CONFIGS = BUNDLE / "configs"
ORGANELLE_CONFIGS = BUNDLES / "fibsem_organelle_centervoxel_segmentation" / "configs"
MEMBRANE_CONFIGS = BUNDLES / "isbi2012_em_membrane_segmentation" / "configs"
INSTANCE_CONFIGS = BUNDLES / "cell_instance_boundary_segmentation_3d" / "configs"
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


@pytest.fixture(scope="module")
def mim_trained(pool, tmp_path_factory) -> dict:
    """Masked image modelling on the phantom pool: 64 x 64 patches, small cubes, 2 epochs."""
    out = tmp_path_factory.mktemp("mim")
    wf = run_workflow(bundle_workflow(CONFIGS, ["train.json", "mim_unet2d.json"], "train", dataset_dir=str(pool), output_dir=str(out),
                                      net_patch_size=[64, 64], mask_size=[8, 16], mask_holes=[4, 8], max_epochs=2,
                                      **{**TINY, "backbone": "4_conv_resnet_valid", "batch_size": 4}))  # fmt: skip
    result = {"out": out, "metrics": dict(wf.parser.get_parsed_content("validate#evaluator").state.metrics)}
    wf.finalize()
    return result


def test_masked_image_modelling_trains_a_unet_and_exports_its_encoder(mim_trained):
    out, metrics = mim_trained["out"], mim_trained["metrics"]
    assert {"val_masked_gain", "val_masked_error", "val_masked_error_input"} <= set(metrics)
    assert metrics["val_masked_gain"] == pytest.approx(1 - metrics["val_masked_error"] / metrics["val_masked_error_input"], abs=1e-6)
    content = torch.load(out / "models" / "backbone.pt", weights_only=True)
    assert content["meta"]["pretext"] == "masked_image_modelling" and content["meta"]["net"] == "UNet"
    assert content["meta"]["channels"] == [16, 32, 64, 128, 256] and content["meta"]["mask_method"] == "dropout"
    assert set(k.split(".")[0] for k in content["backbone"]) == {"down0", "down1", "down2", "down3", "bottom"}
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert {"train_loss", "val_masked_gain"} <= set(run.data.metrics)
    assert {"backbone", "overlays", "plots"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_masked_image_modelling_inference_scores_the_hidden_cubes_against_the_masked_input(mim_trained, pool, tmp_path):
    configs = ["inference.json", "inference_mim_unet2d.json"]
    scores = []
    for run in ("a", "b"):
        wf = bundle_workflow(CONFIGS, configs, "infer", dataset_dir=str(pool), output_dir=str(tmp_path / run), net_patch_size=[64, 64], mask_size=[8, 16],
                             mask_holes=[4, 8], ckpt_path=str(mim_trained["out"] / "models" / "model.pt"), progress_bar=False)  # fmt: skip
        wf.initialize()
        wf.run()
        scores.append(json.loads((tmp_path / run / "pretext_scores.json").read_text()))
    assert scores[0] == scores[1], "a seeded mask: the same report every run"
    assert len(scores[0]) == 3 and all(row["n_patches"] == 4 and row["baseline_mse"] > 0 and "psnr" not in row for row in scores[0].values())
    assert all(row["gain"] == pytest.approx(1 - row["mse"] / row["baseline_mse"], abs=1e-3) for row in scores[0].values())
    assert all((tmp_path / "a" / row["picture"]).is_file() for row in scores[0].values())


@pytest.mark.parametrize("freeze", [True, False])
def test_membrane_bundle_starts_from_the_masked_image_modelling_encoder(mim_trained, phantom_isbi, tmp_path, freeze):
    backbone = mim_trained["out"] / "models" / "backbone.pt"
    wf = bundle_workflow(MEMBRANE_CONFIGS, ["train.json"], "train", dataset_dir=str(phantom_isbi), output_dir=str(tmp_path / "out"),
                         train_indices=[0, 1], val_indices=[2], patch_size=[64, 64], num_samples=2, batch_size=2, max_epochs=1,
                         progress_bar=False, mlflow_experiment_name="tests", pretrained_backbone=str(backbone), freeze_backbone=freeze)  # fmt: skip
    run_workflow(wf)
    net = wf.parser.get_parsed_content("network")
    pretrained = torch.load(backbone, weights_only=True)["backbone"]
    encoder = backbone_of(net).state_dict()
    same = all(torch.equal(encoder[k].cpu(), v) for k, v in pretrained.items())
    wf.finalize()
    assert same is freeze, "frozen: the encoder is exactly the pretrained one; tuned: training moved it"


def test_masked_image_modelling_of_swinunetr_and_of_the_instance_unet3d(pool, tmp_path):
    """The two other encoders: SwinUNETR (2D, membranes) and UNet3D (3D, the instance bundle, whose network then loads it)."""
    tiny = {**TINY, "backbone": "4_conv_resnet_valid", "batch_size": 2, "max_epochs": 1}
    wf = run_workflow(bundle_workflow(CONFIGS, ["train.json", "mim_unet2d.json", "mim_swinunetr2d.json"], "train", dataset_dir=str(pool),
                                      output_dir=str(tmp_path / "swin"), net_patch_size=[64, 64], mask_size=[8, 16], mask_holes=[2, 4], **tiny))  # fmt: skip
    assert np.isfinite(wf.parser.get_parsed_content("validate#evaluator").state.metrics["val_masked_gain"])
    wf.finalize()
    assert torch.load(tmp_path / "swin" / "models" / "backbone.pt", weights_only=True)["meta"]["net"] == "SwinUNETR"
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    for seed in range(2):
        tifffile.imwrite(volumes / f"stack_{seed}.tif", np.stack([make_phantom((48, 48), seed=seed * 10 + z).image for z in range(8)]))
    out = tmp_path / "u3d"
    wf = run_workflow(bundle_workflow(CONFIGS, ["train.json", "mim_unet2d.json", "mim_unet3d.json"], "train", dataset_dir=str(volumes), output_dir=str(out),
                                      f_maps=4, levels=3, net_patch_size=[8, 32, 32], mask_size=[[2, 4, 4], [4, 8, 8]], mask_holes=[2, 4], **tiny))  # fmt: skip
    wf.finalize()
    backbone = out / "models" / "backbone.pt"
    assert torch.load(backbone, weights_only=True)["meta"]["net"] == "UNet3D"
    instance = bundle_workflow(INSTANCE_CONFIGS, ["train.json"], "train", f_maps=4, levels=3, pretrained_backbone=str(backbone), freeze_backbone=True,
                               output_dir=str(tmp_path / "instance"))  # fmt: skip
    net = instance.parser.get_parsed_content("network")
    pretrained = torch.load(backbone, weights_only=True)["backbone"]
    assert all(torch.equal(net.encoders.state_dict()[k].cpu(), v) for k, v in pretrained.items())
    assert not any(p.requires_grad for p in net.encoders.parameters()) and all(p.requires_grad for p in net.decoders.parameters())
    with pytest.raises(Exception) as excinfo:  # the instance bundle's default width is 16 feature maps, not 4
        wide = bundle_workflow(INSTANCE_CONFIGS, ["train.json"], "train", pretrained_backbone=str(backbone), output_dir=str(tmp_path / "i2"))
        wide.parser.get_parsed_content("network")
    assert "does not fit the configured network" in error_chain(excinfo) and "backbone.0." in error_chain(excinfo)


def test_pixpro_override_trains_the_unet_encoder_and_logs_similarity_maps(pool, tmp_path):
    wf = run_workflow(bundle_workflow(CONFIGS, ["train.json", "pixpro_unet2d.json"], "train", dataset_dir=str(pool), output_dir=str(tmp_path), max_epochs=2,
                                      net_patch_size=[96, 96], view_size=[64, 64], projection_dim=16, hidden_dim=32,
                                      **{**TINY, "backbone": "4_conv_resnet_valid", "batch_size": 2}))  # fmt: skip
    metrics = wf.parser.get_parsed_content("validate#evaluator").state.metrics
    wf.finalize()
    assert -1.0 <= metrics["val_positive_similarity"] <= 1.0 and -1.0 <= metrics["val_other_similarity"] <= 1.0
    assert metrics["val_similarity_contrast"] == pytest.approx(metrics["val_positive_similarity"] - metrics["val_other_similarity"], abs=1e-6)
    content = torch.load(tmp_path / "models" / "backbone.pt", weights_only=True)
    assert content["meta"]["pretext"] == "pixpro" and content["meta"]["channels"] == [16, 32, 64, 128, 256]
    assert content["meta"]["best_metric"] >= metrics["val_similarity_contrast"] - 1e-6, "the backbone of the best contrast"
    assert (tmp_path / "plots" / "val_overlay_epoch0002.png").stat().st_size > 1000, "the similarity picture"
    net = load_pretrained_backbone(UNet(2, 1, 1, [16, 32, 64, 128, 256], [2, 2, 2, 2], num_res_units=2, norm="batch"), tmp_path / "models" / "backbone.pt")
    assert torch.equal(backbone_of(net).state_dict()["bottom.conv.unit0.conv.weight"], content["backbone"]["bottom.conv.unit0.conv.weight"])
    # evaluate.json on the PixPro checkpoint: its metrics and its similarity picture, not the reconstruction's
    small = {"net_patch_size": [96, 96], "view_size": [64, 64], "projection_dim": 16, "hidden_dim": 32}
    small.update(TINY, backbone="4_conv_resnet_valid", batch_size=2)
    ev = run_workflow(bundle_workflow(CONFIGS, ["train.json", "pixpro_unet2d.json", "evaluate.json"], "eval", dataset_dir=str(pool),
                                      output_dir=str(tmp_path / "ev"), ckpt_path=str(tmp_path / "models" / "model.pt"), **small))  # fmt: skip
    ev.finalize()
    saved = dict(line.split(",") for line in (tmp_path / "ev" / "eval" / "metrics.csv").read_text().splitlines())
    assert float(saved["val_similarity_contrast"]) == pytest.approx(content["meta"]["best_metric"], abs=1e-4), "the best model (model.pt), scored again"
    assert {"val_positive_similarity", "val_other_similarity"} <= set(saved)


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, data, main",
    [("epfl", ("epfl_ca1_multiclass", "epfl_train", "slices"), "val_macro_f1"), ("isbi2012", ("isbi2012", "train", "image"), "val_vrand_thinned")],
)
def test_label_efficiency_quick_runs_one_point_end_to_end(tmp_path, task, data, main):
    """``--quick``: 1 labelled slice, scratch and tuned from the shipped backbone of the task, a few steps; the JSON and the picture."""
    require_data(*data)
    script = BUNDLES.parent / "scripts" / "experiments" / "label_efficiency.py"
    result = subprocess.run([sys.executable, str(script), "--task", task, "--quick", "--json", str(tmp_path / "le.json"), "--work", str(tmp_path / "work"),
                             "--picture", str(tmp_path / "le.png")], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "le.json").read_text())
    point = results[task]["1"]
    assert set(point) == {"scratch", "tuned"} and all(len(point[k]["runs"]) == 1 for k in point)
    assert results["settings"][task]["main_score"] == main and results["settings"][task]["iterations"] == 4
    for init in point.values():
        run = init["runs"][0]
        assert run["iterations"] == 4 and len(run["slices"]) == 1 and 0 <= run[main] <= 1
        assert init["mean"] == pytest.approx(run[main], abs=1e-4)
    assert (tmp_path / "le.png").stat().st_size > 1000
    if task == "isbi2012":  # the other pretext's backbone, on the same draw, files its runs beside the first's
        result = subprocess.run([sys.executable, str(script), "--task", task, "--quick", "--pretext", "pixpro", "--json", str(tmp_path / "le.json"),
                                 "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        results = json.loads((tmp_path / "le.json").read_text())
        assert set(results[task]["1"]) == {"scratch", "tuned", "tuned_pixpro"}, "scratch is not trained again"
        assert results[task]["1"]["tuned_pixpro"]["runs"][0]["slices"] == point["tuned"]["runs"][0]["slices"]
        assert set(results["settings"][task]["backbones"]) == {"mim", "pixpro"}
        assert "| labelled slices | scratch | tuned | tuned_pixpro |" in result.stdout


def test_label_efficiency_refuses_an_unknown_pretext_and_a_missing_backbone(tmp_path):
    script = BUNDLES.parent / "scripts" / "experiments" / "label_efficiency.py"
    base = [sys.executable, str(script), "--task", "isbi2012", "--json", str(tmp_path / "le.json"), "--work", str(tmp_path / "work")]
    result = subprocess.run([*base, "--pretext", "vae"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--pretext 'vae': the isbi2012 task has ['mim', 'pixpro']" in result.stderr
    result = subprocess.run([*base, "--pretext", "pixpro", "--backbone", str(tmp_path / "none.pt")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"the pixpro backbone {tmp_path / 'none.pt'} does not exist" in result.stderr
    assert not (tmp_path / "le.json").exists() and not (tmp_path / "work").exists(), "nothing written before the arguments are checked"
