"""Pretext networks around the centre-voxel backbones: centre-region regression and a masked VAE.

Both keep the downstream network's ``backbone`` (the same :class:`~cseg_monai.networks.centre_voxel.CentreVoxelNet`
layers, planned for the same patch), so its weights move to the organelle classifier unchanged
(:mod:`cseg_monai.networks.pretrained`).

* :func:`build_centre_region_regressor`: the classifier itself with ``K = C (2r+1)^n`` outputs,
  one per voxel of the masked centre region (:class:`~cseg_monai.transforms.pretext.MaskCentreRegiond`);
  trained with the mean squared error.
* :class:`CentreVoxelVAE`: the backbone and a linear head give the mean and log-variance of a
  ``latent_dim`` code; :func:`reparameterise` draws ``z = mean + eps * exp(0.5 * logvar)`` (the
  system this reproduces used ``eps * logvar``, which is neither a standard deviation nor
  positive); a small MLP decodes ``z`` into the whole patch (sigmoid: the patches are in [0, 1]).
  Trained with the reconstruction error plus ``kl_weight`` times :func:`cseg_monai.losses.kl_divergence`
  (:class:`cseg_monai.losses.VAELoss`).

Example:
    >>> import torch
    >>> net = CentreVoxelVAE("4_conv", spatial_dims=2, latent_dim=8)
    >>> recon, mean, logvar = net(torch.rand(2, 1, 32, 32))
    >>> tuple(recon.shape), tuple(mean.shape)
    ((2, 1, 32, 32), (2, 8))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cseg_monai.networks.centre_voxel import CentreVoxelNet
from cseg_monai.networks.registry import build_centre_voxel_net

__all__ = ["CentreVoxelVAE", "build_centre_region_regressor", "centre_region_size", "reparameterise"]


def centre_region_size(radius: int, spatial_dims: int, in_channels: int = 1) -> int:
    """``in_channels * (2 radius + 1) ** spatial_dims``: the values a centre-region regressor predicts.

    Example:
        >>> centre_region_size(1, 2), centre_region_size(0, 3)
        (9, 1)
    """
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 0:
        raise ValueError(f"radius must be a whole number >= 0, got {radius!r}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(in_channels) * (2 * radius + 1) ** spatial_dims


def build_centre_region_regressor(
    name: str, radius: int = 0, spatial_dims: int = 2, in_channels: int = 1, patch_size: Sequence[int] | None = None
) -> CentreVoxelNet:
    """The centre-voxel net ``name`` predicting the ``(2 radius + 1)^n`` masked centre voxels.

    Example:
        >>> build_centre_region_regressor("4_conv", radius=1, spatial_dims=2).n_classes
        9
    """
    net = build_centre_voxel_net(name, centre_region_size(radius, spatial_dims, in_channels), spatial_dims, in_channels, patch_size)
    if min(net.patch_size) < 2 * radius + 1:
        raise ValueError(f"a centre region of radius {radius} does not fit the patch {net.patch_size} of {name!r}")
    net.pretext_radius = int(radius)
    return net


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """``mean + eps * exp(0.5 * logvar)``, ``eps`` standard normal (drawn when not given).

    Example:
        >>> reparameterise(torch.tensor([1.0]), torch.log(torch.tensor([4.0])), eps=torch.tensor([0.5])).item()
        2.0
    """
    if mean.shape != logvar.shape:
        raise ValueError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ in shape")
    if eps is None:
        eps = torch.randn_like(mean)
    return mean + eps * torch.exp(0.5 * logvar)


class CentreVoxelVAE(nn.Module):
    """Variational autoencoder of context patches with a centre-voxel backbone as its encoder.

    Args:
        name: the backbone (a centre-voxel net name, as the organelle bundle's ``backbone``).
        spatial_dims: 2 or 3.
        in_channels: input channels.
        patch_size: the patch (default: the net's nominal patch).
        latent_dim: size of the code.
        hidden: width of the decoder's hidden layer.

    Attributes:
        backbone: the encoder layers (the same module tree as the classifier's ``backbone``).
        head: ``ConvNd`` to ``2 * latent_dim`` (mean, log-variance).
        decoder: MLP from the code to the patch.

    ``forward(x)`` returns ``(reconstruction, mean, logvar)``; in eval mode the code is the mean
    (no sampling), so reconstructions are deterministic.
    """

    def __init__(
        self,
        name: str,
        spatial_dims: int = 2,
        in_channels: int = 1,
        patch_size: Sequence[int] | None = None,
        latent_dim: int = 64,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        for arg, value in (("latent_dim", latent_dim), ("hidden", hidden)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        encoder = build_centre_voxel_net(name, 2 * latent_dim, spatial_dims, in_channels, patch_size)
        self.name, self.spatial_dims, self.in_channels = name, spatial_dims, in_channels
        self.patch_size, self.strides, self.latent_dim = encoder.patch_size, encoder.strides, latent_dim
        self.backbone, self.head = encoder.backbone, encoder.head
        out = in_channels * math.prod(self.patch_size)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, logvar)``, each ``(B, latent_dim)``."""
        stats = self.head(self.backbone(x)).flatten(1)
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if tuple(x.shape[2:]) != self.patch_size:
            raise ValueError(f"CentreVoxelVAE({self.name!r}) takes patches of {self.patch_size}, got {tuple(x.shape[2:])}")
        mean, logvar = self.encode(x)
        z = reparameterise(mean, logvar) if self.training else mean
        recon = self.decoder(z).reshape(x.shape[0], self.in_channels, *self.patch_size)
        return recon, mean, logvar
