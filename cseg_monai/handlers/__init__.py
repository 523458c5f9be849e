"""Ignite handlers used by the bundles (MLflow extras, checkpoints)."""

from cseg_monai.handlers.progress import ProgressBarHandler
from cseg_monai.handlers.validation import FinalValidationHandler
from cseg_monai.handlers.class_scores import ClassScoresSaver
from cseg_monai.handlers.checkpoints import TimeLimitHandler, latest_checkpoint
from cseg_monai.handlers.instance_curves import InstanceCurveLogger, pooled_curve
from cseg_monai.handlers.mlflow_logging import (
    MLflowConfigLogger,
    MLflowValidationLogger,
    active_bundle_config,
    find_run_id,
    flatten_config,
    class_overlay_picture,
    instance_overlay_picture,
    overlay_picture,
)

__all__ = [
    "InstanceCurveLogger",
    "pooled_curve",
    "instance_overlay_picture",
    "ClassScoresSaver",
    "FinalValidationHandler",
    "MLflowConfigLogger",
    "MLflowValidationLogger",
    "ProgressBarHandler",
    "TimeLimitHandler",
    "active_bundle_config",
    "find_run_id",
    "flatten_config",
    "latest_checkpoint",
    "overlay_picture",
    "class_overlay_picture",
]
