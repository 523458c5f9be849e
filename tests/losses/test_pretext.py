"""The VAE objective against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from cseg_monai.losses import MaskedReconstructionLoss, PixProLoss, VAELoss, kl_divergence


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


def test_masked_reconstruction_scores_the_hidden_voxels_only():
    target = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    label = torch.stack([target, mask])[None]  # (1, 2, 2, 2): the original, then the mask
    pred = torch.zeros(1, 1, 2, 2, requires_grad=True)
    loss = MaskedReconstructionLoss("mse")(pred, label)
    assert loss.item() == pytest.approx((1 + 16) / 2)
    loss.backward()
    assert pred.grad[0, 0, 0, 1] == 0 and pred.grad[0, 0, 1, 0] == 0 and pred.grad[0, 0, 0, 0] != 0, "no gradient from visible voxels"
    assert MaskedReconstructionLoss("l1")(torch.zeros(1, 1, 2, 2), label).item() == pytest.approx((1 + 4) / 2)
    assert MaskedReconstructionLoss()(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, 2)).item() == 0.0, "nothing hidden: 0"


def test_masked_reconstruction_refuses_targets_without_the_mask():
    with pytest.raises(ValueError, match=r"target \(B, C \+ 1, \*spatial\).*got \(1, 1, 4, 4\) and \(1, 1, 4, 4\)"):
        MaskedReconstructionLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="must be 'mse' or 'l1'"):
        MaskedReconstructionLoss("huber")


def _grid(size: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    return torch.stack([ys, xs])[None]


def test_pixpro_loss_is_minus_two_for_aligned_features_and_ignores_non_positives():
    feats = torch.nn.functional.normalize(torch.rand(1, 8, 4, 4) + 0.1, dim=1)
    inst = torch.rand(1, 8)
    coords = torch.cat([_grid(8), _grid(8)], dim=1)
    aligned = (feats, feats, feats, feats, inst, inst, inst, inst)
    assert PixProLoss(instance_weight=1.0)(aligned, coords).item() == pytest.approx(-2.0, abs=1e-5)
    far = torch.cat([_grid(8), _grid(8) + 100], dim=1)
    assert PixProLoss()(aligned, far).item() == pytest.approx(0.0, abs=1e-5), "no positives: the instance term only (0 here)"
    with pytest.raises(ValueError, match="8 outputs"):
        PixProLoss()(aligned[:4], coords)
    with pytest.raises(ValueError, match="threshold must be a number > 0"):
        PixProLoss(threshold=0)
