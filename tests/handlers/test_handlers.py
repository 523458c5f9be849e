"""MLflow extras, checkpoint lookup, time limit and progress bar handlers."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from cseg_monai.handlers import (
    MLflowConfigLogger,
    MLflowValidationLogger,
    TimeLimitHandler,
    active_bundle_config,
    flatten_config,
    latest_checkpoint,
    overlay_picture,
)


def test_flatten_config_uses_mlflow_safe_names_and_truncates():
    flat = flatten_config({"a": {"b": [1, {"c": "x" * 900}]}, "empty": []}, max_len=10)
    assert flat == {"a/b/0": "1", "a/b/1/c": "x" * 10, "empty": "[]"}


def test_active_bundle_config_sees_overrides():
    from monai.bundle import ConfigParser

    parser = ConfigParser({"lr": 0.1, "logger": {"_target_": "cseg_monai.handlers.MLflowConfigLogger",
                                                  "tracking_uri": "sqlite:///:memory:", "experiment_name": "x"}})
    parser["lr"] = 0.5  # an override, as `--lr 0.5` on the command line
    logger = parser.get_parsed_content("logger")
    assert isinstance(logger, MLflowConfigLogger)
    assert logger.config["lr"] == 0.5
    assert active_bundle_config() is None


def test_overlay_picture_marks_prediction_and_truth():
    image = np.zeros((1, 6, 6), np.float32)
    image[0, :, 3:] = 1.0
    prob = np.zeros((1, 6, 6), np.float32)
    prob[0, 2, :] = 0.9
    label = np.zeros((1, 6, 6), np.float32)
    label[0, :, 1] = 1
    pic = overlay_picture(image, prob, label)
    assert pic.shape == (6, 26, 3) and pic.dtype == np.uint8
    over = pic[:, 20:]
    assert over[2, 4, 0] > 200 and over[2, 4, 1] < 200  # prediction red
    assert over[4, 1, 1] >= 200  # ground truth green
    # a 3D volume shows its middle plane
    assert overlay_picture(np.random.rand(1, 5, 6, 6), np.random.rand(1, 5, 6, 6)).shape == (6, 26, 3)


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for n in (3, 12, 7):
        (tmp_path / f"checkpoint_epoch={n}.pt").write_bytes(b"")
    (tmp_path / "model.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).endswith("checkpoint_epoch=12.pt")


def test_time_limit_stops_engine():
    engine = Engine(lambda e, b: time.sleep(0.05))
    TimeLimitHandler(0.3).attach(engine)
    t0 = time.perf_counter()
    engine.run(range(100), max_epochs=10)
    assert time.perf_counter() - t0 < 3
    assert engine.state.iteration < 100
    with pytest.raises(ValueError, match="positive"):
        TimeLimitHandler(0)


def test_validation_logger_writes_pictures_and_logs_best_checkpoint(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    run = client.create_run(exp, run_name="r")
    for step in range(5):
        client.log_metric(run.info.run_id, "train_loss", 1.0 / (step + 1), step=step)
    ckpt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, ckpt)

    def step(engine, batch):
        return [{"image": torch.rand(1, 8, 8), "pred": torch.rand(1, 8, 8), "label": torch.rand(1, 8, 8) > 0.5}]

    evaluator = Engine(step)
    handler = MLflowValidationLogger(uri, "e", "r", output_dir=tmp_path, best_checkpoint=ckpt)
    handler.attach(evaluator)

    @evaluator.on(__import__("ignite").engine.Events.EPOCH_COMPLETED)
    def _log_metric(engine):  # as MONAI's MLFlowHandler would, before our handler reads the curve
        client.log_metric(run.info.run_id, "val_score", 0.5, step=engine.state.epoch)

    evaluator.state.best_metric_epoch = 1
    evaluator.run(range(2), max_epochs=1)
    assert (tmp_path / "plots" / "val_overlay_epoch0001.png").is_file()
    assert (tmp_path / "plots" / "learning_curve.png").is_file()
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"overlays", "plots", "checkpoints"} <= logged
