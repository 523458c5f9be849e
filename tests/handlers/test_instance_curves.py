"""InstanceCurveLogger: the pooled F1-vs-IoU curve of an epoch as PNG + JSON, and into MLflow."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from ignite.engine import Engine
from PIL import Image

from cseg_monai.handlers import InstanceCurveLogger
from cseg_monai.metrics import InstanceScoresMetric


def test_curve_files_and_mlflow_artifacts(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("e", artifact_location=str(tmp_path / "art")), run_name="r")
    truth = np.zeros((1, 1, 8, 8), np.int64)
    truth[0, 0, :, :4], truth[0, 0, :, 4:] = 1, 2
    pred = truth.copy()
    pred[0, 0, :2, :4] = 0  # object 1 at IoU 0.75
    metric = InstanceScoresMetric(score="f1", iou=0.5, thresholds=(0.5, 0.8))
    engine = Engine(lambda e, b: ([pred[0]], [truth[0]]))
    metric.attach(engine, "val_f1")
    InstanceCurveLogger(metric, tmp_path, uri, "e", "r", label="val").attach(engine)
    engine.run(range(1), max_epochs=1)
    curve = json.loads((tmp_path / "plots" / "f1_iou_epoch0001.json").read_text())
    assert curve["thresholds"] == [0.5, 0.8] and curve["f1"] == pytest.approx([1.0, 0.5])
    with Image.open(tmp_path / "plots" / "f1_iou_epoch0001.png") as im:
        assert im.format == "PNG"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert logged == {"plots/f1_iou_epoch0001.png", "plots/f1_iou_epoch0001.json"}


def test_no_items_writes_nothing(tmp_path):
    metric = InstanceScoresMetric()
    engine = Engine(lambda e, b: None)
    InstanceCurveLogger(metric, tmp_path).attach(engine)
    engine.run(range(1), max_epochs=1)
    assert not (tmp_path / "plots").exists()
