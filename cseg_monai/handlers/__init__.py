"""Ignite handlers used by the bundles (MLflow extras, checkpoints, progress, scores)."""

from cseg_monai.handlers.backbone_export import BackboneExportHandler
from cseg_monai.handlers.checkpoints import TimeLimitHandler, latest_checkpoint
from cseg_monai.handlers.class_scores import ClassScoresSaver
from cseg_monai.handlers.instance_curves import InstanceCurveLogger
from cseg_monai.handlers.mlflow_logging import MLflowConfigLogger, MLflowValidationLogger
from cseg_monai.handlers.progress import ProgressBarHandler, RunProgressHandler
from cseg_monai.handlers.validation import FinalValidationHandler, LowerIsBetter

__all__ = [
    "BackboneExportHandler",
    "ClassScoresSaver",
    "FinalValidationHandler",
    "InstanceCurveLogger",
    "LowerIsBetter",
    "MLflowConfigLogger",
    "MLflowValidationLogger",
    "ProgressBarHandler",
    "RunProgressHandler",
    "TimeLimitHandler",
    "latest_checkpoint",
]
