"""Losses: voxel-wise classification with sparse labels (ignore index); weighted BCE + Dice for boundaries."""

from cseg_monai.losses.classification import DEFAULT_IGNORE_INDEX, FocalLoss, MaskedCrossEntropyLoss

from cseg_monai.losses.boundary import WeightedBCEDiceLoss

__all__ = ["DEFAULT_IGNORE_INDEX", "MaskedCrossEntropyLoss", "FocalLoss", "WeightedBCEDiceLoss"]
