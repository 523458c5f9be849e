"""Losses: voxel-wise classification with sparse labels (ignore index); weighted BCE + Dice for boundaries; the pretexts' VAE and masked losses."""

from cseg_monai.losses.boundary import WeightedBCEDiceLoss
from cseg_monai.losses.classification import FocalLoss, MaskedCrossEntropyLoss
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
    "VAELoss",
    "kl_divergence",
    "MaskedReconstructionLoss",
    "masked_error",
    "PixProLoss",
    "positive_pairs",
    "cell_centres",
    "positive_similarities",
]
