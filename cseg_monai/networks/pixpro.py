"""PixPro: pixel-level contrastive pretraining of a U-Net encoder (Xie et al. 2021, "Propagate Yourself").

Two overlapping views of one image (:class:`cseg_monai.transforms.PixProViewsd`) go through the
online encoder (the encoder of the downstream MONAI ``UNet``: :func:`~cseg_monai.networks.pretrained.unet_encoder`)
and a pixel projector; a pixel-propagation module (PPM) smooths each online projection,
``y_i = sum_j max(cos(x_i, x_j), 0)^sharpness * g(x_j)``; a momentum (EMA) copy of the encoder
and projector gives the targets. :class:`cseg_monai.losses.PixProLoss` pulls each propagated
online feature towards the target features of the other view at the pixels that are close in
the original image (positive pairs), and adds an instance-level BYOL term on the pooled
features (projector + predictor online, projector on the target). Only the encoder transfers:
:func:`~cseg_monai.networks.pretrained.backbone_of` gives the online encoder, whose keys are those
of the downstream UNet's encoder; the decoder is trained downstream.

Example:
    >>> from monai.networks.nets import UNet
    >>> net = PixPro(UNet(2, 1, 1, (8, 16, 32), (2, 2)), projection_dim=16, hidden_dim=32)
    >>> out = net(torch.rand(2, 2, 32, 32))  # two 1-channel views side by side in the channels
    >>> [tuple(t.shape) for t in out[:2]], tuple(out[4].shape)
    ([(2, 16, 8, 8), (2, 16, 8, 8)], (2, 16))
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from monai.networks.nets import UNet as MonaiUNet
from torch import nn

from cseg_monai.networks.pretrained import unet_encoder

__all__ = ["PixPro", "pixel_propagation"]


def pixel_propagation(x: torch.Tensor, values: torch.Tensor, sharpness: float = 2.0) -> torch.Tensor:
    """``y_i = sum_j max(cos(x_i, x_j), 0)^sharpness * values_j`` over the pixels of each item.

    Args:
        x: ``(B, D, *spatial)`` features whose similarities weigh the sum.
        values: ``(B, D', *spatial)`` what is summed (PixPro: a transform of ``x``).
        sharpness: the exponent (PixPro: 2).

    Example:
        >>> x = torch.tensor([[[[1.0, 1.0, -1.0]], [[0.0, 0.0, 0.0]]]])  # 3 pixels: two alike, one opposite
        >>> pixel_propagation(x, torch.tensor([[[[1.0, 2.0, 5.0]]]])).flatten().tolist()
        [3.0, 3.0, 5.0]
    """
    if x.shape[0] != values.shape[0] or x.shape[2:] != values.shape[2:]:
        raise ValueError(f"features {tuple(x.shape)} and values {tuple(values.shape)} must share batch and spatial shape")
    z = F.normalize(x.flatten(2), dim=1)
    weights = torch.einsum("bdi,bdj->bij", z, z).clamp_min(0).pow(sharpness)
    return torch.einsum("bij,bdj->bdi", weights, values.flatten(2)).reshape(values.shape)


def _conv_mlp(dims: int, in_channels: int, hidden: int, out: int) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    return nn.Sequential(conv(in_channels, hidden, 1), norm(hidden), nn.ReLU(inplace=True), conv(hidden, out, 1))


def _mlp(in_features: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class PixPro(nn.Module):
    """PixPro around the encoder of a MONAI ``UNet`` (2D or 3D).

    Args:
        unet: the downstream network as configured (its encoder is kept, its decoder dropped).
        projection_dim: features of the pixel and instance projections.
        hidden_dim: hidden width of the projectors and the predictor.
        momentum: EMA rate of the target encoder and projectors (PixPro: 0.99), updated at every
            training forward pass, i.e. after each optimiser step.
        sharpness: the PPM exponent (PixPro: 2).
        ppm_layers: 1 (a 1x1 convolution as the PPM's transform, PixPro's default) or 2 (conv-BN-ReLU-conv).

    The input is ``(B, 2C, *spatial)``: the two views side by side in the channels. The output is
    ``(propagated_1, propagated_2, target_1, target_2, instance_1, instance_2, instance_target_1, instance_target_2)``:
    the online pixel projections after the PPM, the target pixel projections (no gradient), the
    online instance predictions and the target instance projections.
    """

    def __init__(self, unet: nn.Module, projection_dim: int = 128, hidden_dim: int = 512, momentum: float = 0.99,
                 sharpness: float = 2.0, ppm_layers: int = 1) -> None:  # fmt: skip
        super().__init__()
        if not isinstance(unet, MonaiUNet):
            raise ValueError(f"PixPro pretrains the encoder of a MONAI UNet, got {type(unet).__name__}")
        for name, value in (("projection_dim", projection_dim), ("hidden_dim", hidden_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if isinstance(sharpness, bool) or not isinstance(sharpness, (int, float)) or not sharpness > 0:
            raise ValueError(f"sharpness must be a number > 0, got {sharpness!r}")
        if ppm_layers not in (1, 2):
            raise ValueError(f"ppm_layers must be 1 or 2, got {ppm_layers!r}")
        self.spatial_dims, self.in_channels = int(unet.dimensions), int(unet.in_channels)
        self.momentum, self.sharpness = float(momentum), float(sharpness)
        features = int(unet.channels[-1])
        dims = self.spatial_dims
        self.backbone = unet_encoder(unet)
        self.projector = _conv_mlp(dims, features, hidden_dim, projection_dim)
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.ppm_transform = conv(projection_dim, projection_dim, 1) if ppm_layers == 1 else _conv_mlp(dims, projection_dim, projection_dim, projection_dim)
        self.instance_projector = _mlp(features, hidden_dim, projection_dim)
        self.predictor = _mlp(projection_dim, hidden_dim, projection_dim)
        self.target_backbone = copy.deepcopy(self.backbone)
        self.target_projector = copy.deepcopy(self.projector)
        self.target_instance_projector = copy.deepcopy(self.instance_projector)
        for module in self._targets():
            module.requires_grad_(False)

    def _pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.target_backbone), (self.projector, self.target_projector),
                (self.instance_projector, self.target_instance_projector)]  # fmt: skip

    def _targets(self) -> list[nn.Module]:
        return [t for _, t in self._pairs()]

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``target = momentum * target + (1 - momentum) * online``; buffers (batch-norm statistics) are copied."""
        for online, target in self._pairs():
            for p, q in zip(online.parameters(), target.parameters()):
                q.mul_(self.momentum).add_(p.detach(), alpha=1.0 - self.momentum)
            for b, c in zip(online.buffers(), target.buffers()):
                c.copy_(b)

    @staticmethod
    def _encode(encoder: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        for layer in encoder.values():
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != 2 * self.in_channels:
            raise ValueError(f"PixPro takes two {self.in_channels}-channel views side by side: (B, {2 * self.in_channels}, *spatial), got {tuple(x.shape)}")
        if self.training:
            self.momentum_update()
        views = (x[:, : self.in_channels], x[:, self.in_channels :])
        feats = [self._encode(self.backbone, v) for v in views]
        projected = [self.projector(f) for f in feats]
        propagated = [pixel_propagation(p, self.ppm_transform(p), self.sharpness) for p in projected]
        instance = [self.predictor(self.instance_projector(f.flatten(2).mean(dim=2))) for f in feats]
        with torch.no_grad():
            target_feats = [self._encode(self.target_backbone, v) for v in views]
            target = [self.target_projector(f) for f in target_feats]
            target_instance = [self.target_instance_projector(f.flatten(2).mean(dim=2)) for f in target_feats]
        return (*propagated, *target, *instance, *target_instance)
