"""Losses: voxel-wise classification with sparse labels (ignore index); weighted BCE + Dice for boundaries."""

from cseg_monai.losses.boundary import WeightedBCEDiceLoss
from cseg_monai.losses.classification import FocalLoss, MaskedCrossEntropyLoss

__all__ = ["MaskedCrossEntropyLoss", "FocalLoss", "WeightedBCEDiceLoss"]
