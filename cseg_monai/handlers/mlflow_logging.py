"""Ignite handlers that complete MONAI's ``MLFlowHandler``: config, pictures, best checkpoint.

MONAI's ``MLFlowHandler`` logs the loss per iteration and the metrics per epoch. These
handlers add, to the SAME run (found by :class:`cseg_monai.tracking.RunLookup`):

- :class:`MLflowConfigLogger` (trainer): the merged bundle config, as flattened params and
  as the artifact ``config/config.json``;
- :class:`MLflowValidationLogger` (evaluator): after every validation, a PNG overlay of one
  prediction (``overlays/``), a learning-curve PNG (``plots/learning_curve.png``) and the
  best checkpoint when the key metric improved (``checkpoints/``).

Attach them AFTER MONAI's ``MLFlowHandler`` (which creates the run on ``STARTED``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from cseg_monai.tracking import RunLookup, active_bundle_config, log_config
from cseg_monai.visualisation import (
    class_overlay_picture,
    cleft_picture,
    instance_overlay_picture,
    learning_curve_plot,
    overlay_picture,
    reconstruction_picture,
    save_png,
    similarity_picture,
    track_picture,
)

__all__ = ["MLflowConfigLogger", "MLflowValidationLogger"]

logger = logging.getLogger(__name__)


class MLflowConfigLogger:
    """Log the merged bundle config to the current MLflow run when the trainer starts.

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///out/mlruns.db``.
        experiment_name: experiment of the run (as given to MONAI's ``MLFlowHandler``).
        run_name: run name (as given to MONAI's ``MLFlowHandler``); ``None`` = newest running run.
        config: the config to log; default: the config of the bundle being parsed
            (:func:`active_bundle_config`), captured when this handler is built.

    Example:
        In a bundle's ``train#handlers``, after the ``MLFlowHandler``::

            {"_target_": "cseg_monai.handlers.MLflowConfigLogger", "tracking_uri": "@mlflow_tracking_uri",
             "experiment_name": "@mlflow_experiment_name", "run_name": "@mlflow_run_name"}
    """

    def __init__(
        self, tracking_uri: str, experiment_name: str, run_name: str | None = None, config: dict | None = None
    ) -> None:
        self.lookup = RunLookup(tracking_uri, experiment_name, run_name)
        self.config = config if config is not None else active_bundle_config()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)

    def started(self, engine: Engine) -> None:
        run_id = self.lookup.run_id()
        if run_id is None or self.config is None:
            return
        try:
            log_config(self.lookup.client, run_id, self.config)
        except Exception as err:  # tracking must never stop a training
            logger.warning("could not log the config to MLflow run %s: %s", run_id, err)


def _volume(x: Any) -> Any:
    """A ``(1, Z, Y, X)`` item as ``(Z, Y, X)`` numpy (``None`` stays)."""
    if x is None:
        return None
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return arr[0] if arr.ndim == 4 else arr


#: The pictures :class:`MLflowValidationLogger` draws.
PICTURES = ("membrane", "classes", "instances", "reconstruction", "similarity", "cleft", "tracks")


class MLflowValidationLogger:
    """After each validation: overlay PNG, learning curve PNG and improved best checkpoint to MLflow.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment_name: experiment of the run.
        run_name: run name; ``None`` = newest running run.
        output_dir: the PNGs are also kept under ``output_dir/plots``.
        best_checkpoint: path of the best-model file written by a ``CheckpointSaver``
            (``save_key_metric=True``); logged whenever the key metric improves.
        curve_metrics: metric names drawn in the learning curve (with the training loss
            logged by MONAI's handler under ``loss_name``).
        loss_name: name of the per-iteration training loss in MLflow.
        image_key, pred_key, label_key: keys of the evaluator's output items.
        picture: ``"membrane"`` (:func:`overlay_picture`, binary foreground), ``"classes"``
            (:func:`class_overlay_picture`, multi-class argmax), ``"instances"``
            (:func:`instance_overlay_picture`; ``pred_key`` then names instance ids), ``"cleft"``
            (:func:`cleft_picture`: raw, probability, clefts of the section with the most clefts) or
            ``"reconstruction"`` (:func:`reconstruction_picture` of a pretext: masked input,
            reconstruction, original, for the first 4 items) or ``"similarity"``
            (:func:`similarity_picture` of PixPro features; the evaluator must not decollate) or
            ``"tracks"`` (:func:`track_picture`: sections with traced ids over them, true ids
            below; ``pred_key`` names traced ids, ``label_key`` true ids).
        picture_grid: ``(patch_size, strides)`` for ``"classes"`` pictures of centre-voxel
            grid outputs (see :func:`class_overlay_picture`).

    Example:
        In ``validate#handlers``, after the ``MLFlowHandler`` and the ``CheckpointSaver``::

            {"_target_": "cseg_monai.handlers.MLflowValidationLogger", "tracking_uri": "@mlflow_tracking_uri",
             "experiment_name": "@mlflow_experiment_name", "run_name": "@mlflow_run_name",
             "output_dir": "@output_dir", "best_checkpoint": "$@ckpt_dir + '/model.pt'"}
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        run_name: str | None = None,
        output_dir: str | os.PathLike = ".",
        best_checkpoint: str | os.PathLike | None = None,
        curve_metrics: list[str] | tuple[str, ...] = (),
        loss_name: str = "train_loss",
        image_key: str = "image",
        pred_key: str = "pred",
        label_key: str = "label",
        picture: str = "membrane",
        picture_grid: tuple[Sequence[int], Sequence[int]] | None = None,
    ) -> None:
        if picture not in PICTURES:
            raise ValueError(f"picture must be one of {list(PICTURES)}, got {picture!r}")
        self.picture = picture
        self.picture_grid = picture_grid
        self.lookup = RunLookup(tracking_uri, experiment_name, run_name)
        self.plot_dir = Path(output_dir) / "plots"
        self.best_checkpoint = None if best_checkpoint is None else Path(best_checkpoint)
        self.curve_metrics = tuple(curve_metrics)
        self.loss_name = loss_name
        self.keys = (image_key, pred_key, label_key)
        self._sample: tuple | None = None
        self._samples: list[tuple] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._keep_first)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.validation_completed)

    def _reset(self, engine: Engine) -> None:
        self._sample = None
        self._samples = []

    def _keep_first(self, engine: Engine) -> None:
        wanted = 4 if self.picture == "reconstruction" else 1
        if len(self._samples) >= wanted:
            return
        output = engine.state.output
        items = list(output) if isinstance(output, (list, tuple)) else [output]
        keep = [tuple(it.get(k) for k in self.keys) for it in items if isinstance(it, dict) and self.keys[0] in it and self.keys[1] in it]
        self._samples += keep[: wanted - len(self._samples)]
        if self._samples:
            self._sample = self._samples[0]

    def validation_completed(self, engine: Engine) -> None:
        run_id = self.lookup.run_id()
        epoch = int(engine.state.epoch)
        client = self.lookup.client
        if self._sample is not None:
            if self.picture == "classes":
                pic = class_overlay_picture(*self._sample, grid=self.picture_grid)
            elif self.picture == "similarity":
                pic = similarity_picture(self._sample[0], self._sample[1])
            elif self.picture == "reconstruction":
                pic = reconstruction_picture(self._samples)
            elif self.picture == "instances":
                pic = instance_overlay_picture(*self._sample)
            elif self.picture == "cleft":
                pic = cleft_picture(*self._sample)
            elif self.picture == "tracks":
                image, traced, truth = (_volume(x) for x in self._sample)
                pic = track_picture(image, traced, truth)
            else:
                pic = overlay_picture(*self._sample)
            path = save_png(pic, self.plot_dir / f"val_overlay_epoch{epoch:04d}.png")
            if run_id:
                client.log_artifact(run_id, str(path), artifact_path="overlays")
        if run_id:
            curve = self._learning_curve(run_id)
            if curve is not None:
                client.log_artifact(run_id, str(curve), artifact_path="plots")
            best_epoch = getattr(engine.state, "best_metric_epoch", -1)
            if self.best_checkpoint is not None and best_epoch == epoch and self.best_checkpoint.is_file():
                client.log_artifact(run_id, str(self.best_checkpoint), artifact_path="checkpoints")

    def _learning_curve(self, run_id: str) -> Path | None:
        client = self.lookup.client
        loss = client.get_metric_history(run_id, self.loss_name)
        names = self.curve_metrics or tuple(k for k in client.get_run(run_id).data.metrics if k.startswith("val_"))
        metrics = {n: [(m.step, m.value) for m in client.get_metric_history(run_id, n)] for n in names}
        return learning_curve_plot(
            [(m.step, m.value) for m in loss], metrics, self.plot_dir / "learning_curve.png", loss_name=self.loss_name
        )
