"""Losses for voxel-wise classification with sparse labels (ignore index)."""

from cseg_monai.losses.classification import DEFAULT_IGNORE_INDEX, FocalLoss, MaskedCrossEntropyLoss

__all__ = ["DEFAULT_IGNORE_INDEX", "MaskedCrossEntropyLoss", "FocalLoss"]
