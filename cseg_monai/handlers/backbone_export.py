"""Export the backbone of a pretext network whenever its validation improves, and log it to MLflow.

Example:
    In ``validate#handlers`` of the pretraining bundle, after the ``CheckpointSaver``::

        {"_target_": "cseg_monai.handlers.BackboneExportHandler", "network": "@network",
         "path": "$@output_dir + '/models/backbone.pt'", "meta": {"pretext": "@pretext"},
         "tracking_uri": "@mlflow_tracking_uri", "experiment_name": "@mlflow_experiment_name",
         "run_name": "@mlflow_run_name"}
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from torch import nn

from cseg_monai.networks import backbone_of, export_backbone
from cseg_monai.tracking import RunLookup

__all__ = ["BackboneExportHandler"]

logger = logging.getLogger(__name__)


class BackboneExportHandler:
    """After each validation whose key metric is the best so far: write the network's backbone
    (:func:`cseg_monai.networks.export_backbone`, with ``meta``) to ``path`` and log the file as
    an MLflow artifact (``backbone/``) when a run is given.

    Args:
        network: the pretext network (it must have a ``backbone``).
        path: the backbone file.
        meta: recorded with the weights (pretext, pool, ...); the net, dims and patch are added.
        tracking_uri, experiment_name, run_name: the MLflow run (all None: no logging).
        enabled: False attaches nothing.

    Raises:
        ValueError: a network without a backbone (checked at once, not after the first epoch).
    """

    def __init__(
        self,
        network: nn.Module,
        path: str | os.PathLike,
        meta: dict[str, Any] | None = None,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        enabled: bool = True,
    ) -> None:
        backbone_of(network)
        self.network, self.path, self.meta, self.enabled = network, Path(path), dict(meta or {}), bool(enabled)
        self.lookup = RunLookup(tracking_uri, experiment_name, run_name) if tracking_uri else None
        self.exports = 0

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        best_epoch = getattr(engine.state, "best_metric_epoch", -1)
        if best_epoch != engine.state.epoch:
            return
        meta = {**self.meta, "epoch": int(engine.state.epoch), "best_metric": float(getattr(engine.state, "best_metric", float("nan")))}
        export_backbone(self.network, self.path, meta)
        self.exports += 1
        if self.lookup is not None:
            run_id = self.lookup.run_id()
            if run_id:
                try:
                    self.lookup.client.log_artifact(run_id, str(self.path), artifact_path="backbone")
                except Exception as err:  # tracking must never stop a training
                    logger.warning("could not log %s to MLflow run %s: %s", self.path, run_id, err)
