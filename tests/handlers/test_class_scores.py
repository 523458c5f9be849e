"""ClassScoresSaver: per-class F1/AP to JSON and CSV (atomically) and to a real MLflow run."""

from __future__ import annotations

import csv
import json

import mlflow
import numpy as np
import pytest
import torch
from ignite.engine import Engine

from cseg_monai.handlers import ClassScoresSaver
from cseg_monai.metrics import MacroF1Metric


def _evaluator(metric: MacroF1Metric) -> Engine:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]).T.reshape(1, 2, 4, 1)  # (B, C, Y, X)
    labels = torch.tensor([0, 1, 1, 255]).reshape(1, 1, 4, 1)
    engine = Engine(lambda e, b: (probs, labels))
    metric.attach(engine, "val_macro_f1")
    return engine


def test_writes_json_csv_and_logs_to_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("e", artifact_location=str(tmp_path / "art")), run_name="r")
    metric = MacroF1Metric(n_classes=2)
    engine = _evaluator(metric)
    ClassScoresSaver(metric, ["cytoplasm", "mitochondrion membrane"], tmp_path / "eval", mlflow_enabled=True,
                     tracking_uri=uri, experiment_name="e", run_name="r", prefix="val_").attach(engine)  # fmt: skip
    engine.run(range(1), max_epochs=1)
    summary = json.loads((tmp_path / "eval" / "class_scores.json").read_text())
    # 3 labelled voxels: class 0 right once (TP 1), class 1 right once and once called 0 -> F1 2/3 and 2/3
    assert summary["per_class"]["cytoplasm"]["f1"] == pytest.approx(2 / 3)
    assert summary["per_class"]["mitochondrion membrane"]["f1"] == pytest.approx(2 / 3)
    rows = list(csv.reader((tmp_path / "eval" / "class_scores.csv").open()))
    assert rows[0] == ["class", "f1", "ap"] and rows[1][:2] == ["cytoplasm", "0.6667"]
    metrics = client.get_run(run.info.run_id).data.metrics
    assert metrics["val_f1_mitochondrion_membrane"] == pytest.approx(2 / 3)
    assert not list((tmp_path / "eval").glob("*.tmp*"))


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="PooledClassificationMetric"):
        ClassScoresSaver(object(), ["a"], tmp_path)
    metric = MacroF1Metric(n_classes=2)
    engine = _evaluator(metric)
    ClassScoresSaver(metric, ["only one"], tmp_path).attach(engine)
    with pytest.raises(ValueError, match="1 class names for 2 classes"):
        engine.run(range(1), max_epochs=1)
    assert np.isfinite(metric.scores["macro_f1"])
