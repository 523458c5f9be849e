"""MLflowConfigLogger and MLflowValidationLogger against a real MLflow store."""

from __future__ import annotations

import mlflow
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from cseg_monai.handlers import MLflowConfigLogger, MLflowValidationLogger
from cseg_monai.tracking import active_bundle_config


def test_active_bundle_config_sees_overrides():
    parser = ConfigParser({"lr": 0.1, "logger": {"_target_": "cseg_monai.handlers.MLflowConfigLogger",
                                                  "tracking_uri": "sqlite:///:memory:", "experiment_name": "x"}})
    parser["lr"] = 0.5  # an override, as `--lr 0.5` on the command line
    logger = parser.get_parsed_content("logger")
    assert isinstance(logger, MLflowConfigLogger)
    assert logger.config["lr"] == 0.5
    assert active_bundle_config() is None


def test_validation_logger_writes_pictures_and_logs_best_checkpoint(tmp_path):
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

    @evaluator.on(Events.EPOCH_COMPLETED)
    def _log_metric(engine):  # as MONAI's MLFlowHandler would, before our handler reads the curve
        client.log_metric(run.info.run_id, "val_score", 0.5, step=engine.state.epoch)

    evaluator.state.best_metric_epoch = 1
    evaluator.run(range(2), max_epochs=1)
    assert (tmp_path / "plots" / "val_overlay_epoch0001.png").is_file()
    assert (tmp_path / "plots" / "learning_curve.png").is_file()
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"overlays", "plots", "checkpoints"} <= logged


def test_config_logger_logs_params_and_the_config_artifact(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    run = client.create_run(exp, run_name="r")
    config = {"lr": 0.1, "net": {"channels": [16, 32]}, "long": "x" * 900}
    trainer = Engine(lambda e, b: None)
    MLflowConfigLogger(uri, "e", "r", config=config).attach(trainer)
    trainer.run(range(1), max_epochs=1)
    params = client.get_run(run.info.run_id).data.params
    assert params["lr"] == "0.1" and params["net/channels/1"] == "32" and len(params["long"]) == 500
    assert [a.path for a in client.list_artifacts(run.info.run_id, "config")] == ["config/config.json"]
