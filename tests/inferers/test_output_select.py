"""OutputIndexInferer keeps the asked output of a multi-output network."""

from __future__ import annotations

import pytest
import torch

from cseg_monai.inferers import OutputIndexInferer
from cseg_monai.networks import CentreVoxelVAE


def test_keeps_the_reconstruction_of_a_vae():
    net = CentreVoxelVAE("4_conv", spatial_dims=2, latent_dim=4, hidden=8).eval()
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(OutputIndexInferer(0)(x, net), net(x)[0])
    assert tuple(OutputIndexInferer(1)(x, net).shape) == (2, 4)
    assert torch.equal(OutputIndexInferer(0)(x, lambda t: t * 2), x * 2), "a single tensor passes through"


def test_bad_index():
    with pytest.raises(ValueError, match="index must be a whole number >= 0"):
        OutputIndexInferer(-1)
    with pytest.raises(IndexError, match="returned 2 outputs, output 2 was asked for"):
        OutputIndexInferer(2)(torch.zeros(1), lambda t: (t, t))
