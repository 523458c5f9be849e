"""Losses: voxel-wise classification with sparse labels (ignore index); weighted BCE + Dice for boundaries; the pretexts' VAE loss."""

from cseg_monai.losses.boundary import WeightedBCEDiceLoss
from cseg_monai.losses.classification import FocalLoss, MaskedCrossEntropyLoss
from cseg_monai.losses.pretext import VAELoss, kl_divergence

__all__ = ["MaskedCrossEntropyLoss", "FocalLoss", "WeightedBCEDiceLoss", "VAELoss", "kl_divergence"]
