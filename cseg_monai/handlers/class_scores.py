"""Save the per-class scores of a pooled classification metric (JSON, CSV and MLflow)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from ignite.engine import Engine, Events

from cseg_monai.data.writers import atomic_path
from cseg_monai.tracking import RunLookup

__all__ = ["ClassScoresSaver"]


def _jsonable(value: object) -> object:
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)


class ClassScoresSaver:
    """After each evaluation epoch, write the per-class F1/AP of ``metric`` to ``output_dir``.

    ``metric`` is a :class:`~cseg_monai.metrics.PooledClassificationMetric` attached to the
    same evaluator (its ``scores`` dict is filled when it computes). Writes
    ``class_scores.json`` (every score) and ``class_scores.csv`` (class, f1, ap) atomically
    and, with ``mlflow_enabled``, logs ``{prefix}f1_{class}`` / ``{prefix}ap_{class}`` metrics.

    Args:
        metric: the pooled metric.
        class_names: one name per class id.
        output_dir: where the files go (created).
        mlflow_enabled: also log to MLflow.
        tracking_uri, experiment_name, run_name: the MLflow run (as the bundles' handlers).
        prefix: prefix of the MLflow metric names.

    Example:
        In ``validate#handlers``::

            {"_target_": "cseg_monai.handlers.ClassScoresSaver",
             "metric": "@validate#key_metric#val_macro_ap", "class_names": [...],
             "output_dir": "@eval_dir"}
    """

    def __init__(
        self,
        metric: object,
        class_names: Sequence[str],
        output_dir: str | os.PathLike,
        mlflow_enabled: bool = False,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        prefix: str = "",
    ) -> None:
        if not hasattr(metric, "scores"):
            raise TypeError(f"metric must be a PooledClassificationMetric, got {type(metric).__name__}")
        self.metric = metric
        self.class_names = [str(n) for n in class_names]
        self.output_dir = Path(output_dir)
        self.mlflow = None
        if mlflow_enabled:
            self.mlflow = RunLookup(tracking_uri, experiment_name, run_name)
        self.prefix = prefix

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        scores = getattr(self.metric, "scores", None)
        if not scores:
            return
        f1 = [float(v) for v in scores["per_class_f1"]]
        ap = [float(v) for v in scores["per_class_ap"]]
        if len(f1) != len(self.class_names):
            raise ValueError(f"{len(self.class_names)} class names for {len(f1)} classes")
        summary = {k: v for k, v in scores.items() if k not in ("per_class_f1", "per_class_ap")}
        summary["per_class"] = {
            name: {"f1": a, "ap": None if math.isnan(b) else b} for name, a, b in zip(self.class_names, f1, ap)
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.output_dir / "class_scores.json") as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["class", "f1", "ap"])
        for name, a, b in zip(self.class_names, f1, ap):
            writer.writerow([name, f"{a:.4f}", "" if math.isnan(b) else f"{b:.4f}"])
        with atomic_path(self.output_dir / "class_scores.csv") as tmp:
            Path(tmp).write_text(buf.getvalue())
        if self.mlflow is not None:
            run_id = self.mlflow.run_id()
            if run_id:
                step = int(engine.state.epoch)
                for name, a, b in zip(self.class_names, f1, ap):
                    key = name.replace(" ", "_")
                    self.mlflow.client.log_metric(run_id, f"{self.prefix}f1_{key}", a, step=step)
                    if not math.isnan(b):
                        self.mlflow.client.log_metric(run_id, f"{self.prefix}ap_{key}", b, step=step)
