"""The organelle centre-voxel bundle end to end on phantom data (folder layout), in-process.

Train (tile training, grid validation, MLflow), evaluate (dense CentreVoxelInferer, per-class
scores), inference (STEM_prob.tif / STEM_labels.tif), the UNet override, a 3D run, metadata,
the shipped weights, and a two-process torchrun on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from cseg_monai.data import load_image
from cseg_monai.data.phantom import write_organelle_dataset

from conftest import BUNDLES, ROOT, bundle_workflow, error_chain, free_port, require_data, run_workflow

BUNDLE = BUNDLES / "fibsem_organelle_centervoxel_segmentation"
CONFIGS = BUNDLE / "configs"
TINY = {
    "dataset_kind": "folder",
    "grid_size": 2,
    "num_samples": 2,
    "batch_size": 2,
    "num_workers": 0,
    "train_indices": [0, 1, 2],
    "val_indices": [3],
    "val_shifts": [[0, 0], [8, 8]],
    "progress_bar": False,
    "mlflow_experiment_name": "tests",
}


def _workflow(configs, workflow_type, **override):
    return bundle_workflow(CONFIGS, configs, workflow_type, **override)


@pytest.fixture(scope="module")
def phantom_organelles(tmp_path_factory):
    return write_organelle_dataset(tmp_path_factory.mktemp("organelles"), n_slices=4, shape=(128, 128), seed=3)


@pytest.fixture(scope="module")
def trained(phantom_organelles, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    wf = run_workflow(_workflow(["train.json"], "train", dataset_dir=phantom_organelles, output_dir=str(out),
                        max_epochs=2, val_interval=1, **TINY))
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    trainer = wf.parser.get_parsed_content("train#trainer")
    result = {"out": out, "metrics": dict(evaluator.state.metrics), "iterations": int(trainer.state.iteration),
              "loss": float(trainer.state.output[0]["loss"]),
              "label_shape": tuple(trainer.state.output[0]["label"].shape)}
    wf.finalize()
    return result


def test_training_on_tiles_writes_metrics_checkpoints_and_class_pictures(trained):
    out = trained["out"]
    # 3 slices, batch 2 -> 2 iterations per epoch (of 4 and 2 tiles); the label is the 2 x 2 output grid
    assert trained["iterations"] == 4
    assert trained["label_shape"] == (1, 2, 2)
    assert np.isfinite(trained["loss"])
    for name in ("val_macro_ap", "val_macro_f1", "val_kappa", "val_accuracy"):
        assert name in trained["metrics"], name
    assert 0 <= trained["metrics"]["val_accuracy"] <= 1
    assert (out / "models" / "model.pt").is_file()
    assert (out / "models" / "checkpoint_final.pt").is_file()
    pics = sorted((out / "plots").glob("val_overlay_epoch*.png"))
    assert len(pics) == 2
    from PIL import Image

    pic = np.asarray(Image.open(pics[-1]))
    assert pic.ndim == 3 and pic.shape[0] >= 256 and pic.shape[1] > 2 * pic.shape[0]  # 3 panels

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    exp = client.get_experiment_by_name("tests")
    run = client.search_runs([exp.experiment_id])[0]
    assert run.data.params["backbone"] == "4_conv_resnet_valid"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_macro_ap")] == [1, 2]


def test_evaluate_runs_densely_and_writes_probabilities_labels_and_class_scores(trained, phantom_organelles):
    out = trained["out"]
    ev = run_workflow(_workflow(["train.json", "evaluate.json"], "eval", dataset_dir=phantom_organelles,
                        output_dir=str(out), ckpt_path=str(out / "models" / "model.pt"), block_size=48, **TINY))
    metrics = dict(ev.parser.get_parsed_content("validate#evaluator").state.metrics)
    prob = tifffile.imread(out / "eval" / "3_prob.tif")
    labels = tifffile.imread(out / "eval" / "3_labels.tif")
    assert prob.shape == (6, 128, 128) and prob.dtype == np.float32
    assert np.allclose(prob.sum(0), 1, atol=1e-5)
    assert labels.shape == (128, 128) and labels.dtype == np.uint8
    assert np.array_equal(labels, prob.argmax(0))
    # the dense metrics are those of the written files against the ground truth
    from cseg_monai.metrics import classification_scores

    truth = tifffile.imread(Path(phantom_organelles) / "labels" / "3.tif")
    scores = classification_scores(prob[None], truth[None, None], n_classes=6)
    assert metrics["val_accuracy"] == pytest.approx(scores["accuracy"], abs=1e-6)
    assert metrics["val_macro_f1"] == pytest.approx(scores["macro_f1"], abs=1e-6)
    saved = json.loads((out / "eval" / "class_scores.json").read_text())
    assert set(saved["per_class"]) == {"cytoplasm", "membrane", "mitochondrion", "mitochondrion membrane",
                                       "synapse", "vesicle"}
    assert (out / "eval" / "class_scores.csv").read_text().startswith("class,f1,ap")
    ev.finalize()


def test_inference_on_a_folder_matches_evaluation(trained, phantom_organelles, tmp_path):
    out = trained["out"]
    images = tmp_path / "in"
    images.mkdir()
    (images / "3.tif").write_bytes((Path(phantom_organelles) / "images" / "3.tif").read_bytes())
    wf = run_workflow(_workflow(["inference.json"], "infer", dataset_dir=str(images), output_dir=str(tmp_path / "pred"),
                        ckpt_path=str(out / "models" / "model.pt"), progress_bar=False))
    prob = tifffile.imread(tmp_path / "pred" / "3_prob.tif")
    assert prob.shape == (6, 128, 128)
    # the same as the trained net run densely on the image scaled as in training (uint8 / 255)
    from cseg_monai.inferers import CentreVoxelInferer
    from cseg_monai.networks import build_centre_voxel_net

    net = build_centre_voxel_net("4_conv_resnet_valid", 6, spatial_dims=2)
    net.load_state_dict(torch.load(out / "models" / "model.pt", map_location="cpu"))
    image = torch.from_numpy(tifffile.imread(images / "3.tif").astype(np.float32) / 255)[None, None]
    ref = torch.softmax(CentreVoxelInferer(net.eval())(image), dim=1)[0].numpy()
    assert np.abs(prob - ref).max() < 1e-5
    wf.finalize()
    tta = run_workflow(_workflow(["inference.json"], "infer", dataset_dir=str(images), output_dir=str(tmp_path / "tta"),
                         ckpt_path=str(out / "models" / "model.pt"), progress_bar=False, tta_transforms=8))
    averaged = tifffile.imread(tmp_path / "tta" / "3_prob.tif")
    assert np.allclose(averaged.sum(0), 1, atol=1e-5)  # the mean of 8 softmaxes
    assert 0 < np.abs(averaged - prob).max() < 1  # flipped/rotated contexts give other (valid) predictions
    tta.finalize()


def test_shipped_weights_load_and_are_small():
    path = BUNDLE / "models" / "model.pt"
    assert path.is_file() and path.stat().st_size <= 15 * 2**20
    from cseg_monai.networks import build_centre_voxel_net

    net = build_centre_voxel_net("4_conv_resnet_valid", 6, spatial_dims=2)
    net.load_state_dict(torch.load(path, map_location="cpu"))


@pytest.mark.parametrize("variant,net_name", [("unet", "UNet"), ("swinunetr", "SwinUNETR")])
def test_dense_alternatives_train_on_sparse_labels_and_evaluate(variant, net_name, tmp_path):
    sparse = write_organelle_dataset(tmp_path / "sparse", n_slices=4, shape=(128, 128), seed=3, labelled_fraction=0.2)
    tiny = {**TINY, "crop_size": [64, 64], "num_samples": 1}
    wf = run_workflow(_workflow(["train.json", f"{variant}.json"], "train", dataset_dir=sparse, output_dir=str(tmp_path / "o"),
                        max_epochs=1, val_interval=1, mlflow_enabled=False, **tiny))
    assert type(wf.parser.get_parsed_content("network_def")).__name__ == net_name
    metrics = dict(wf.parser.get_parsed_content("validate#evaluator").state.metrics)
    assert {"val_macro_ap", "val_macro_f1"} <= set(metrics)
    wf.finalize()
    ev = run_workflow(_workflow(["train.json", "evaluate.json", f"{variant}.json"], "eval", dataset_dir=sparse,
                        output_dir=str(tmp_path / "o"), ckpt_path=str(tmp_path / "o" / "models" / "model.pt"),
                        mlflow_enabled=False, **tiny))
    prob = tifffile.imread(tmp_path / "o" / "eval" / "3_prob.tif")
    assert prob.shape == (6, 128, 128)
    ev.finalize()


def test_3d_anisotropic_patches_train_and_infer(tmp_path):
    vols = write_organelle_dataset(tmp_path / "v", n_slices=2, shape=(12, 48, 48), seed=5, labelled_fraction=0.25,
                                   spacing=(5.0, 1.0, 1.0))
    over = {**TINY, "spatial_dims": 3, "backbone": "4_conv", "patch_size": [5, 32, 32], "grid_size": [1, 2, 2],
            "train_indices": [0], "val_indices": [1], "val_shifts": [[0, 0, 0]], "mlflow_enabled": False}
    wf = run_workflow(_workflow(["train.json", "focal_loss.json"], "train", dataset_dir=vols, output_dir=str(tmp_path / "o"),
                        max_epochs=1, val_interval=1, **over))
    net = wf.parser.get_parsed_content("network_def")
    assert net.patch_size == (5, 32, 32)
    assert type(wf.parser.get_parsed_content("loss")).__name__ == "FocalLoss"
    steps = wf.parser.get_parsed_content("train#preprocessing").transforms
    across = [t for t in steps if type(t).__name__ == "RandRotate90d" and tuple(t.spatial_axes) != (1, 2)]
    assert not across  # anisotropic data: in-plane rotations only
    wf.finalize()
    iso = _workflow(["train.json"], "train", dataset_dir=vols, **{**over, "isotropic": True, "patch_size": [8, 8, 8]})
    iso.initialize()
    steps = iso.parser.get_parsed_content("train#preprocessing").transforms
    assert {tuple(t.spatial_axes) for t in steps if type(t).__name__ == "RandRotate90d"} == {(1, 2), (0, 1), (0, 2)}
    inf = run_workflow(_workflow(["inference.json"], "infer", dataset_dir=str(Path(vols) / "images"),
                         output_dir=str(tmp_path / "pred"), ckpt_path=str(tmp_path / "o" / "models" / "model.pt"),
                         spatial_dims=3, backbone="4_conv", patch_size=[5, 32, 32], progress_bar=False))
    assert tifffile.imread(tmp_path / "pred" / "0_prob.tif").shape == (6, 12, 48, 48)
    assert tifffile.imread(tmp_path / "pred" / "0_labels.tif").shape == (12, 48, 48)
    inf.finalize()


def test_metadata_and_network_verify(tmp_path):
    from monai.bundle import verify_metadata, verify_net_in_out

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(ROOT / "configs" / "metadata_schema.json"))
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=str(CONFIGS / "inference.json"), n=1, any=1)
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"]["3"] == "mitochondrion membrane"


def test_unknown_config_key_and_bad_labels_are_named(phantom_organelles, tmp_path):
    with pytest.raises(Exception) as err:
        _workflow(["train.json"], "train", dataset_dir=phantom_organelles, learnig_rate=0.1, **TINY).initialize()
    assert "did you mean 'learning_rate'" in str(err.value.__cause__ or err.value)
    bad = write_organelle_dataset(tmp_path / "bad", n_slices=4, shape=(64, 64))
    tifffile.imwrite(Path(bad) / "labels" / "1.tif", np.full((64, 64), 7, np.uint8))
    wf = _workflow(["train.json"], "train", dataset_dir=bad, output_dir=str(tmp_path / "o"), max_epochs=1,
                   mlflow_enabled=False, **TINY)
    wf.initialize()
    with pytest.raises(Exception) as err:
        wf.run()
    chain = error_chain(err).splitlines()
    assert any("1.tif" in m and "label values [7]" in m for m in chain), chain


@pytest.mark.slow
def test_multi_gpu_override_with_torchrun_two_cpu_processes(phantom_organelles, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun), "--nproc_per_node=2", "--master_port", str(free_port()), "-m", "monai.bundle", "run",
        "training", "--config_file", f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']",
        "--dataset_kind", "folder", "--dataset_dir", phantom_organelles, "--output_dir", str(out), "--max_epochs", "1",
        "--val_interval", "1", "--mlflow_experiment_name", "ddp", "--grid_size", "2", "--num_samples", "2",
        "--train_indices", "[0,1]", "--val_indices", "[2,3]", "--val_shifts", "[[0,0]]", "--progress_bar", "False",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = torch.load(out / "models" / "model.pt", map_location="cpu")
    assert not any(k.startswith("module.") for k in state)
    assert "val_macro_ap" in proc.stdout + proc.stderr
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]  # rank 0 alone logs: one run, not one per process
    assert {"train_loss", "val_macro_ap"} <= set(runs[0].data.metrics)



def test_folder_data_config_splits_off_validation_images(phantom_organelles):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "data_folder.json")])
    parser["dataset_dir"] = phantom_organelles
    train = parser.get_parsed_content("train#datalist")
    val = parser.get_parsed_content("validate#datalist")
    assert len(train) == 3 and len(val) == 1
    assert {i["image"] for i in train}.isdisjoint(i["image"] for i in val)


def test_drosophila_data_config_builds_an_anisotropic_3d_net():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "data_drosophila_vnc.json")])
    net = parser.get_parsed_content("network_def")
    assert net.spatial_dims == 3 and net.patch_size == (9, 102, 102) and net.strides == (1, 16, 16)
    assert parser.get_parsed_content("dataset_kind") == "drosophila_vnc"


@pytest.mark.slow
def test_out_of_core_inference_is_exact_on_real_epfl_slices(tmp_path):
    """inference_large.json (dense centre voxels in blocks, reflect padding, 2 TTA transforms) on a
    stack of two real EPFL slices against inference.json on each slice: the same class scores and labels."""
    folder = require_data("epfl_ca1_multiclass", "epfl_train", "slices")
    stack = np.stack([load_image(folder / f"training000{z}.png")[0] for z in (0, 1)])[:, :200, :230]
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    (tmp_path / "slices").mkdir()
    for z in range(2):
        tifffile.imwrite(tmp_path / "slices" / f"s{z}.tif", stack[z])
    mem = bundle_workflow(CONFIGS, ["inference.json"], "infer", dataset_dir=str(tmp_path / "slices"), output_dir=str(tmp_path / "mem"),
                          tta_transforms=2, progress_bar=False)
    run_workflow(mem)
    big = bundle_workflow(CONFIGS, ["inference.json", "inference_large.json"], "infer", dataset_dir=str(tmp_path / "stack.tif"),
                          output_dir=str(tmp_path / "big"), tta_transforms=2, progress_bar=False, scheduler="synchronous",
                          prob_dtype="float32", block_shape=[1, 128, 128], chunks=[1, 64, 64])
    big.initialize()
    big.run()
    root = zarr.open_group(tmp_path / "big" / "stack.ome.zarr", mode="r")
    for z in range(2):
        assert np.abs(root["0"][:, z] - tifffile.imread(tmp_path / "mem" / f"s{z}_prob.tif")).max() < 1e-5
        assert np.array_equal(root["labels/segmentation/0"][z], tifffile.imread(tmp_path / "mem" / f"s{z}_labels.tif"))


def test_em_augmentation_override_trains(phantom_organelles, tmp_path):
    """configs/em_augment.json: defect bands and motion blur on 2D slices (misalignment and missing sections only in 3D)."""
    wf = _workflow(["train.json", "em_augment.json"], "train", dataset_dir=phantom_organelles, output_dir=str(tmp_path), max_epochs=1, val_interval=1, **TINY)
    wf.initialize()
    names = [type(t).__name__ for t in wf.parser.get_parsed_content("train#preprocessing").transforms]
    assert "RandMissingBandd" in names and "RandMotionBlurd" in names and "RandMisalignmentd" not in names
    wf.run()
    assert np.isfinite(float(wf.parser.get_parsed_content("train#trainer").state.output[0]["loss"]))
    wf.finalize()
