"""The ISBI 2012 membrane bundle end to end: train, evaluate, infer, resume, verify, export.

Everything runs in-process through ``ConfigWorkflow`` on a tiny phantom (fast, no data
needed) except one real ``python -m monai.bundle run training`` command line.
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
from PIL import Image

from conftest import BUNDLES, ROOT, bundle_workflow, free_port, require_data

BUNDLE = BUNDLES / "isbi2012_em_membrane_segmentation"
CONFIGS = BUNDLE / "configs"
TINY = {
    "patch_size": [64, 64],
    "num_samples": 2,
    "batch_size": 2,
    "num_workers": 0,
    "train_indices": [0, 1, 2, 3],
    "val_indices": [4, 5],
    "progress_bar": False,
    "mlflow_experiment_name": "tests",
}


def _workflow(configs, workflow_type, **override):
    return bundle_workflow(CONFIGS, configs, workflow_type, **override)


def _train(data: Path, out: Path, **extra):
    wf = _workflow(["train.json"], "train", dataset_dir=str(data), output_dir=str(out), **{**TINY, **extra})
    wf.initialize()
    assert wf.check_properties() in (None, [])
    wf.run()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    trainer = wf.parser.get_parsed_content("train#trainer")
    metrics = dict(evaluator.state.metrics)
    metrics["final_loss"] = float(trainer.state.output[0]["loss"])
    metrics["best"] = float(evaluator.state.best_metric)
    result = (metrics, int(trainer.state.epoch), int(trainer.state.iteration))
    wf.finalize()
    return result


@pytest.fixture(scope="module")
def trained(phantom_isbi, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    metrics, epochs, iterations = _train(phantom_isbi, out, max_epochs=2, val_interval=1, checkpoint_interval=1)
    return {"out": out, "metrics": metrics, "epochs": epochs, "iterations": iterations}


def test_training_writes_checkpoints_metrics_and_pictures(trained):
    out = trained["out"]
    assert trained["epochs"] == 2
    metrics = trained["metrics"]
    for name in ("val_vrand_thinned", "val_vinfo_thinned", "val_vrand", "val_vinfo", "val_pixel_error", "val_dice"):
        assert name in metrics and 0.0 <= metrics[name] <= 1.0, name
    assert metrics["best"] >= metrics["val_vrand_thinned"]
    assert (out / "models" / "model.pt").is_file()
    assert (out / "models" / "checkpoint_final.pt").is_file()
    assert list((out / "models").glob("checkpoint_epoch=*.pt"))
    assert (out / "mlruns.db").is_file()
    overlays = sorted((out / "plots").glob("val_overlay_epoch*.png"))
    assert len(overlays) == 2
    assert (out / "plots" / "learning_curve.png").is_file()


def test_mlflow_run_holds_loss_metrics_config_and_artifacts(trained):
    import mlflow

    out = trained["out"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    exp = client.get_experiment_by_name("tests")
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.run_name LIKE 'train_%'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    loss = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(loss) == trained["iterations"]
    vrand = client.get_metric_history(run.info.run_id, "val_vrand_thinned")
    assert [m.step for m in vrand] == [1, 2]
    params = run.data.params
    assert params["learning_rate"] == "0.002"
    assert params["network_def/_target_"] == "UNet"
    assert json.loads(params["patch_size/0"]) == 64
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "overlays", "plots", "checkpoints"} <= artifacts
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "checkpoints/model.pt" in logged


def test_evaluate_and_inference_write_outputs(trained, phantom_isbi, tmp_path):
    out = trained["out"]
    ev = _workflow(
        ["train.json", "evaluate.json"], "eval",
        dataset_dir=str(phantom_isbi), output_dir=str(out), ckpt_path=str(out / "models" / "model.pt"),
        tta_transforms=1, **TINY,
    )
    ev.initialize()
    assert ev.check_properties() in (None, [])
    ev.run()
    metrics = dict(ev.parser.get_parsed_content("validate#evaluator").state.metrics)
    ev.finalize()
    # evaluating the best checkpoint (without TTA, as in training) reproduces the best validation score
    assert metrics["val_vrand_thinned"] == pytest.approx(trained["metrics"]["best"], abs=1e-9)
    assert (out / "eval" / "metrics.csv").is_file()

    pred_dir = tmp_path / "pred"
    inf = _workflow(
        ["inference.json"], "infer", dataset_dir=str(phantom_isbi / "test" / "image"), output_dir=str(pred_dir),
        ckpt_path=str(out / "models" / "model.pt"), progress_bar=False,
    )
    inf.initialize()
    assert inf.check_properties() in (None, [])
    inf.run()
    inf.finalize()
    stems = sorted(p.stem for p in (phantom_isbi / "test" / "image").iterdir())
    for stem in stems:
        prob = tifffile.imread(pred_dir / f"{stem}_prob.tif")
        labels = tifffile.imread(pred_dir / f"{stem}_labels.tif")
        assert prob.shape == (1, 128, 128) and prob.dtype == np.float32
        assert 0.0 <= prob.min() and prob.max() <= 1.0
        assert labels.shape == (128, 128) and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, 1}
        np.testing.assert_array_equal(labels, (prob[0] > 0.5).astype(np.uint8))
    assert not list(pred_dir.glob(".*tmp*")), "temporary files left behind"


def test_shipped_weights_predict_membranes_on_real_isbi(tmp_path):
    from conftest import require_data

    image = require_data("isbi2012", "train", "image", "22.png")
    label = require_data("isbi2012", "train", "label", "22.png")
    inf = _workflow(
        ["inference.json"], "infer", datalist=[{"image": str(image)}], output_dir=str(tmp_path), progress_bar=False,
    )
    inf.initialize()
    inf.run()
    inf.finalize()
    from PIL import Image

    from cseg_monai.metrics import dice_score

    prob = tifffile.imread(tmp_path / "22_prob.tif")
    gt = (np.array(Image.open(label).convert("L")) == 0).astype(np.uint8)
    assert prob.shape == (1, 512, 512)
    # slice 22 is a validation slice: the shipped model never trained on it
    assert dice_score((prob[0] > 0.5).astype(np.uint8), gt) > 0.8


def test_resume_continues_from_last_checkpoint(phantom_isbi, tmp_path):
    out = tmp_path / "resume"
    _, epochs, iterations = _train(phantom_isbi, out, max_epochs=1, val_interval=1, checkpoint_interval=1,
                                   mlflow_enabled=False)
    assert epochs == 1
    _, epochs2, iterations2 = _train(phantom_isbi, out, max_epochs=2, val_interval=1, checkpoint_interval=1,
                                     resume=True, mlflow_enabled=False)
    assert epochs2 == 2
    assert iterations2 == 2 * iterations  # continued, not restarted


def test_time_limit_still_validates_and_saves_a_best_model(phantom_isbi, tmp_path):
    metrics, epochs, _ = _train(phantom_isbi, tmp_path / "tl", max_epochs=50, val_interval=100, time_limit_s=0.5,
                                mlflow_enabled=False)
    assert epochs < 50  # stopped by the time limit
    assert "val_vrand_thinned" in metrics  # ... and validated once at the end
    assert (tmp_path / "tl" / "models" / "model.pt").is_file()


def test_same_seed_same_metrics(phantom_isbi, tmp_path):
    a = _train(phantom_isbi, tmp_path / "a", max_epochs=1, val_interval=1, mlflow_enabled=False)[0]
    b = _train(phantom_isbi, tmp_path / "b", max_epochs=1, val_interval=1, mlflow_enabled=False)[0]
    c = _train(phantom_isbi, tmp_path / "c", max_epochs=1, val_interval=1, mlflow_enabled=False, seed=7)[0]
    assert a == b
    assert a["final_loss"] != c["final_loss"]


def test_verify_metadata_net_in_out_and_export(tmp_path):
    from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(ROOT / "configs" / "metadata_schema.json"))
    verify_net_in_out(
        net_id="network_def", meta_file=str(CONFIGS / "metadata.json"), config_file=str(CONFIGS / "inference.json"),
        n=4, any=16,
    )
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def", filepath=str(ts), ckpt_file=str(BUNDLE / "models" / "model.pt"),
        meta_file=str(CONFIGS / "metadata.json"), config_file=str(CONFIGS / "inference.json"),
    )
    scripted = torch.jit.load(str(ts))
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu"))
    net.eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-4, atol=1e-4)


def test_swinunetr_override_builds_and_runs():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "swinunetr.json")])
    net = parser.get_parsed_content("network_def")
    assert type(net).__name__ == "SwinUNETR"
    with torch.no_grad():
        assert net(torch.randn(1, 1, 64, 64)).shape == (1, 1, 64, 64)


def test_em_augmentation_override_trains(phantom_isbi, tmp_path):
    """configs/em_augment.json adds the EM augmentations (defect bands, motion blur) to the training transforms."""
    wf = _workflow(["train.json", "em_augment.json"], "train", dataset_dir=str(phantom_isbi), output_dir=str(tmp_path), **{**TINY, "max_epochs": 1})
    wf.initialize()
    names = [type(t).__name__ for t in wf.parser.get_parsed_content("train#preprocessing").transforms]
    assert names[-2:] == ["RandMissingBandd", "RandMotionBlurd"]
    wf.run()
    assert np.isfinite(float(wf.parser.get_parsed_content("train#trainer").state.output[0]["loss"]))
    wf.finalize()


def test_dlinknet_override_builds_and_runs():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "dlinknet.json")])
    net = parser.get_parsed_content("network_def").eval()
    assert type(net).__name__ == "DLinkNet" and parser.get_parsed_content("ckpt_path").endswith("model_dlinknet.pt")
    with torch.no_grad():
        assert net(torch.randn(1, 1, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.slow
def test_monai_bundle_command_line(phantom_isbi, tmp_path):
    """The documented command line, as a user types it (one subprocess)."""
    out = tmp_path / "cli"
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(CONFIGS / "train.json"),
        "--dataset_dir", str(phantom_isbi), "--output_dir", str(out),
        "--patch_size", "[64,64]", "--num_samples", "2", "--batch_size", "2", "--num_workers", "0",
        "--train_indices", "[0,1,2]", "--val_indices", "[4]", "--max_epochs", "1", "--val_interval", "1",
        "--progress_bar", "False",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "models" / "model.pt").is_file()
    assert "val_vrand_thinned" in proc.stdout + proc.stderr



@pytest.mark.slow
def test_real_mlflow_server_serves_the_run(trained):
    """Start `mlflow server` on a free loopback port, read the run over REST, stop it by PID."""
    import signal
    import time
    import urllib.request

    out = trained["out"]
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{out / 'mlruns.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not come up within 120 s"
            time.sleep(0.5)

        def call(path, payload=None):
            data = None if payload is None else json.dumps(payload).encode()
            req = urllib.request.Request(f"{base}{path}", data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())

        exp = call("/api/2.0/mlflow/experiments/get-by-name?experiment_name=tests")["experiment"]
        runs = call("/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]],
                                                    "filter": "attributes.run_name LIKE 'train_%'"})["runs"]
        assert len(runs) == 1
        run_id = runs[0]["info"]["run_id"]
        hist = call(f"/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=val_vrand_thinned")["metrics"]
        assert sorted(m["step"] for m in hist) == [1, 2]
        assert [round(m["value"], 6) for m in sorted(hist, key=lambda m: m["step"])][-1] == round(
            trained["metrics"]["val_vrand_thinned"], 6)
        loss = call(f"/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=train_loss")["metrics"]
        assert len(loss) == trained["iterations"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode is not None


@pytest.mark.slow
def test_multi_gpu_override_with_torchrun_two_cpu_processes(phantom_isbi, tmp_path):
    """multi_gpu_train.json as documented, on CPU: torchrun, 2 processes, gloo, DDP, distributed metrics."""
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun), "--nproc_per_node=2", "--master_port", str(free_port()), "-m", "monai.bundle", "run", "training",
        "--config_file", f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']",
        "--dataset_dir", str(phantom_isbi), "--output_dir", str(out), "--max_epochs", "1", "--val_interval", "1",
        "--mlflow_experiment_name", "ddp", "--patch_size", "[64,64]", "--num_samples", "2", "--batch_size", "2",
        "--num_workers", "0", "--train_indices", "[0,1,2,3]", "--val_indices", "[4,5]", "--progress_bar", "False",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "models" / "model.pt").is_file()
    state = torch.load(out / "models" / "model.pt", map_location="cpu")
    assert not any(k.startswith("module.") for k in state)  # saved unwrapped, loadable by inference.json
    assert "val_vrand_thinned" in proc.stdout + proc.stderr
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]  # rank 0 alone logs: one run, not one per process
    assert {"train_loss", "val_vrand_thinned"} <= set(runs[0].data.metrics)


@pytest.mark.slow
def test_out_of_core_inference_equals_in_memory_inference_on_real_slices(tmp_path):
    """inference_large.json on a Fiji-style stack of real ISBI test slices, in blocks smaller than a slice,
    against inference.json on each slice: the same probabilities (to float tolerance) and labels."""
    folder = require_data("isbi2012", "test", "image")
    stack = np.stack([np.asarray(Image.open(folder / f"{z}.png")) for z in (3, 4)])[:, :300, :340]
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX", "spacing": 0.05, "unit": "um"}, resolution=(250, 250))
    (tmp_path / "slices").mkdir()
    for z in range(2):
        tifffile.imwrite(tmp_path / "slices" / f"s{z}.tif", stack[z])
    run_workflow = _workflow(["inference.json"], "infer", dataset_dir=str(tmp_path / "slices"), output_dir=str(tmp_path / "mem"), progress_bar=False)
    run_workflow.initialize()
    run_workflow.run()
    large = _workflow(["inference.json", "inference_large.json"], "infer", dataset_dir=str(tmp_path / "stack.tif"), output_dir=str(tmp_path / "big"),
                      progress_bar=False, scheduler="synchronous", prob_dtype="float32", block_shape=[1, 128, 256], chunks=[1, 128, 128])
    large.initialize()
    large.run()
    root = zarr.open_group(tmp_path / "big" / "stack.ome.zarr", mode="r")
    assert root.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.05, 0.004, 0.004]
    for z in range(2):
        prob = tifffile.imread(tmp_path / "mem" / f"s{z}_prob.tif")[0]
        assert np.abs(root["0"][0, z] - prob).max() < 1e-5
        assert (root["labels/segmentation/0"][z] != tifffile.imread(tmp_path / "mem" / f"s{z}_labels.tif")).sum() <= 2
