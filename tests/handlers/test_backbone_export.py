"""The backbone is exported when validation improves, and logged to a real MLflow store."""

from __future__ import annotations

import mlflow
import pytest
import torch
from ignite.engine import Engine, Events
from monai.networks.nets import UNet

from cseg_monai.handlers import BackboneExportHandler
from cseg_monai.networks import build_centre_region_regressor, build_centre_voxel_net, load_pretrained_backbone


def test_exports_on_improvement_only_and_logs_the_artifact(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    run = client.create_run(exp, run_name="r")
    net = build_centre_region_regressor("4_conv", radius=1, spatial_dims=2)
    path = tmp_path / "models" / "backbone.pt"
    handler = BackboneExportHandler(net, path, {"pretext": "centre_region"}, uri, "e", "r")
    scores = iter([0.5, 0.4, 0.7])

    def record(engine):  # what MONAI's evaluator does with its key metric
        value = next(scores)
        if value > getattr(engine.state, "best_metric", -1):
            engine.state.best_metric, engine.state.best_metric_epoch = value, engine.state.epoch

    evaluator = Engine(lambda e, b: None)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, record)
    handler.attach(evaluator)
    evaluator.run([0], max_epochs=3)
    assert handler.exports == 2, "epochs 1 and 3 improved, epoch 2 did not"
    assert all(torch.equal(v, net.backbone.state_dict()[k]) for k, v in torch.load(path, weights_only=True)["backbone"].items())
    content = torch.load(path, weights_only=True)
    assert content["meta"]["epoch"] == 3 and content["meta"]["best_metric"] == pytest.approx(0.7)
    assert content["meta"]["pretext"] == "centre_region" and content["meta"]["net"] == "4_conv"
    assert load_pretrained_backbone(build_centre_voxel_net("4_conv", 6, spatial_dims=2), path) is not None
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "backbone")]
    assert artifacts == ["backbone/backbone.pt"]


def test_refuses_a_network_without_backbone_at_once(tmp_path):
    with pytest.raises(ValueError, match="Conv2d has no backbone"):
        BackboneExportHandler(torch.nn.Conv2d(1, 1, 3), tmp_path / "b.pt")
    BackboneExportHandler(UNet(2, 1, 1, (4, 8), (2,)), tmp_path / "b.pt")  # a MONAI UNet's backbone is its encoder
