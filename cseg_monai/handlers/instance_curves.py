"""After each validation: the pooled F1-vs-IoU curve of an :class:`InstanceScoresMetric` as a PNG (and to MLflow)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["InstanceCurveLogger", "pooled_curve"]

logger = logging.getLogger(__name__)


def pooled_curve(items: list[dict[str, Any]]) -> dict[str, list[float]]:
    """F1 / precision / recall per IoU threshold with TP, FP, FN summed over items.

    Example:
        >>> pooled_curve([{"thresholds": [0.5], "tp": [2], "fp": [0], "fn": [2]}])["f1"]
        [0.6666666666666666]
    """
    if not items:
        raise ValueError("no items to pool")
    ths = items[0]["thresholds"]
    out: dict[str, list[float]] = {"thresholds": list(ths), "f1": [], "precision": [], "recall": []}
    for k in range(len(ths)):
        tp = sum(s["tp"][k] for s in items)
        fp = sum(s["fp"][k] for s in items)
        fn = sum(s["fn"][k] for s in items)
        out["f1"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
        out["precision"].append(tp / (tp + fp) if tp + fp else 1.0)
        out["recall"].append(tp / (tp + fn) if tp + fn else 1.0)
    return out


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
            from cseg_monai.handlers.mlflow_logging import _RunLookup

            self.lookup = _RunLookup(tracking_uri, experiment_name, run_name)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        from cseg_monai.data.writers import atomic_path
        from cseg_monai.metrics.instances import f1_iou_plot

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
            run_id = self.lookup.run_id()
            if run_id:
                try:
                    self.lookup.client.log_artifact(run_id, str(png), artifact_path="plots")
                    self.lookup.client.log_artifact(run_id, str(png.with_suffix(".json")), artifact_path="plots")
                except Exception as err:  # tracking must never stop a run
                    logger.warning("could not log the F1-vs-IoU curve to MLflow: %s", err)
