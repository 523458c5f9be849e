"""Segmentation metrics: membrane / ISBI 2012 scores and their Ignite wrappers; classification, instances;
synaptic clefts (CREMI); pretext scores; tracing through serial sections."""

from cseg_monai.metrics.ignite_metrics import MembraneDiceMetric, PixelErrorMetric, VInfoMetric, VRandMetric
from cseg_monai.metrics.membrane import (
    DEFAULT_THRESHOLDS,
    dice_score,
    info_scores,
    isbi_scores,
    isbi_scores_per_threshold,
    membrane_to_segmentation,
    pixel_error,
    rand_scores,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "pixel_error",
    "dice_score",
    "membrane_to_segmentation",
    "rand_scores",
    "info_scores",
    "isbi_scores_per_threshold",
    "isbi_scores",
    "PixelErrorMetric",
    "MembraneDiceMetric",
    "VRandMetric",
    "VInfoMetric",
]

from cseg_monai.metrics.classification import (  # noqa: E402
    AccuracyMetric,
    KappaMetric,
    MacroAPMetric,
    MacroF1Metric,
    PooledClassificationMetric,
    classification_scores,
)

__all__ += [
    "classification_scores",
    "PooledClassificationMetric",
    "AccuracyMetric",
    "MacroF1Metric",
    "MacroAPMetric",
    "KappaMetric",
]

from cseg_monai.metrics.instances import (  # noqa: E402
    DEFAULT_IOU_THRESHOLDS,
    InstanceScoresMetric,
    detection_scores,
    instance_scores,
    iou_matrix,
    match_at,
    pooled_curve,
)

__all__ += [
    "DEFAULT_IOU_THRESHOLDS",
    "InstanceScoresMetric",
    "detection_scores",
    "instance_scores",
    "iou_matrix",
    "match_at",
    "pooled_curve",
]

from cseg_monai.metrics.reconstruction import MaskedErrorMetric, MaskedGainMetric  # noqa: E402

__all__ += ["MaskedErrorMetric", "MaskedGainMetric"]

from cseg_monai.metrics.contrastive import PositiveSimilarityMetric  # noqa: E402

__all__ += ["PositiveSimilarityMetric"]

from cseg_monai.metrics.cleft import CLEFT_SCORES, CremiCleftMetric, cremi_cleft_scores  # noqa: E402

__all__ += ["CLEFT_SCORES", "CremiCleftMetric", "cremi_cleft_scores"]

from cseg_monai.metrics.tracing import TRACING_SCORES, TracingScoresMetric, tracing_scores  # noqa: E402

__all__ += ["TRACING_SCORES", "TracingScoresMetric", "tracing_scores"]
