"""Losses: voxel-wise classification with sparse labels (ignore index); weighted BCE + Dice for boundaries;
per-crop balanced focal and BCE + Dice for rare targets (synaptic clefts); the pretexts' VAE and masked losses."""

from cseg_monai.losses.boundary import WeightedBCEDiceLoss
from cseg_monai.losses.classification import FocalLoss, MaskedCrossEntropyLoss
from cseg_monai.losses.cleft import BalancedBCEDiceLoss, BalancedBinaryFocalLoss, crop_positive_weight, crop_weight_map
from cseg_monai.losses.pretext import (
    MaskedReconstructionLoss,
    PixProLoss,
    VAELoss,
    cell_centres,
    kl_divergence,
    masked_error,
    positive_pairs,
    positive_similarities,
)

__all__ = [
    "MaskedCrossEntropyLoss",
    "FocalLoss",
    "WeightedBCEDiceLoss",
    "BalancedBinaryFocalLoss",
    "BalancedBCEDiceLoss",
    "crop_positive_weight",
    "crop_weight_map",
    "VAELoss",
    "kl_divergence",
    "MaskedReconstructionLoss",
    "masked_error",
    "PixProLoss",
    "positive_pairs",
    "cell_centres",
    "positive_similarities",
]
