"""The VAE objective against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from cseg_monai.losses import VAELoss, kl_divergence


def test_kl_by_hand():
    mean = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    logvar = torch.tensor([[math.log(2.0), 0.0], [math.log(0.5), 0.0]])
    # per element 0.5 (var + mean^2 - 1 - ln var); per row summed, rows averaged
    row0 = 0.5 * (2 + 1 - 1 - math.log(2)) + 0.0
    row1 = 0.5 * (0.5 + 0 - 1 - math.log(0.5)) + 0.5 * (1 + 4 - 1 - 0)
    assert kl_divergence(mean, logvar).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert kl_divergence(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0.0


def test_vae_loss_is_reconstruction_plus_weighted_kl():
    recon, target = torch.full((2, 1, 3, 3), 0.25), torch.zeros(2, 1, 3, 3)
    mean, logvar = torch.ones(2, 4), torch.zeros(2, 4)  # KL per row 0.5 * 4 = 2
    assert VAELoss(kl_weight=0.0)((recon, mean, logvar), target).item() == pytest.approx(0.0625)
    assert VAELoss(kl_weight=0.1)((recon, mean, logvar), target).item() == pytest.approx(0.0625 + 0.2)
    assert VAELoss(kl_weight=0.0, reconstruction="l1")((recon, mean, logvar), target).item() == pytest.approx(0.25)


def test_bad_input():
    with pytest.raises(ValueError, match="kl_weight must be a finite number >= 0"):
        VAELoss(kl_weight=-1)
    with pytest.raises(ValueError, match="reconstruction must be 'mse' or 'l1'"):
        VAELoss(reconstruction="bce")
    with pytest.raises(ValueError, match="takes the \\(reconstruction, mean, logvar\\)"):
        VAELoss()(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="differ in shape"):
        VAELoss()((torch.zeros(1, 1, 2, 2), torch.zeros(1, 2), torch.zeros(1, 2)), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="must both be \\(batch, latent\\)"):
        kl_divergence(torch.zeros(3), torch.zeros(3))
