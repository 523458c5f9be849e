"""After each validation: the pooled F1-vs-IoU curve of an :class:`InstanceScoresMetric` as a PNG (and to MLflow)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from cseg_monai.data.writers import atomic_path
from cseg_monai.metrics.instances import pooled_curve
from cseg_monai.tracking import RunLookup
from cseg_monai.visualisation import f1_iou_plot

__all__ = ["InstanceCurveLogger"]


class InstanceCurveLogger:
    """Write ``output_dir/plots/f1_iou_epochNNNN.png`` and ``.json`` after each evaluation; log them to MLflow.

    Args:
        metric: the evaluator's :class:`~cseg_monai.metrics.InstanceScoresMetric` (its per-item
            scores of the epoch are pooled).
        output_dir: where ``plots/`` goes.
        tracking_uri, experiment_name, run_name: the MLflow run (None: no MLflow).
        label: legend of the curve.
    """

    def __init__(
        self,
        metric: Any,
        output_dir: str | os.PathLike,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        label: str = "validation",
    ) -> None:
        self.metric, self.plot_dir, self.label = metric, Path(output_dir) / "plots", label
        self.lookup = None
        if tracking_uri is not None and experiment_name is not None:
            self.lookup = RunLookup(tracking_uri, experiment_name, run_name)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        items = getattr(self.metric, "items", [])
        if not items:
            return
        curve = pooled_curve(items)
        epoch = int(engine.state.epoch)
        png = self.plot_dir / f"f1_iou_epoch{epoch:04d}.png"
        f1_iou_plot({self.label: curve}, png, title=f"F1 vs IoU (epoch {epoch})")
        with atomic_path(png.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(curve, indent=2) + "\n")
        if self.lookup is not None:
            self.lookup.log_artifact(png, artifact_path="plots")
            self.lookup.log_artifact(png.with_suffix(".json"), artifact_path="plots")
