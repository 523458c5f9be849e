"""D-LinkNet: a ResNet-34 encoder, a dilated centre and LinkNet decoders, for 2D profiles of axons or membranes.

D-LinkNet (Zhou et al. 2018, road extraction; used for axon and membrane masks in serial EM by
the NMJ line of work) keeps a LinkNet's light decoder, whose skips are ADDED (not
concatenated), and widens the receptive field at the bottleneck with cascaded dilated
convolutions, which suits long thin structures. The encoder is MONAI's ResNet-34
(:class:`monai.networks.nets.ResNet`, basic blocks 3-4-6-3) for one grey channel, so no
torchvision build is needed.

``DLinkNet(in_channels=1, out_channels=1)`` (``encoder="resnet34"``, ``width=64``) on a ``(B, 1, H, W)``
input, H and W multiples of 32 (``width`` scales every channel count below; ``resnet18`` has
2 blocks per encoder stage)::

    stage        layers                                                          channels   size
    stem         conv 7x7 /2, BN, ReLU, max-pool 3x3 /2                           64        H/4
    encoder 1    ResNet layer1 (3 basic blocks)                                    64        H/4
    encoder 2    ResNet layer2 (4 basic blocks, /2)                               128        H/8
    encoder 3    ResNet layer3 (6 basic blocks, /2)                               256        H/16
    encoder 4    ResNet layer4 (3 basic blocks, /2)                               512        H/32
    centre       d1 = ReLU(conv3x3 dil 1 (e4)), d2 = ReLU(conv dil 2 (d1)),
                 d3 = ReLU(conv dil 4 (d2)), d4 = ReLU(conv dil 8 (d3));
                 e4 + d1 + d2 + d3 + d4                                           512        H/32
    decoder 4    conv1x1 512->128 BN ReLU, deconv3x3 /2 BN ReLU, conv1x1 ->256 BN ReLU; + e3   256   H/16
    decoder 3    conv1x1 256->64, deconv /2, conv1x1 ->128 (BN ReLU each); + e2   128        H/8
    decoder 2    conv1x1 128->32, deconv /2, conv1x1 ->64;  + e1                   64        H/4
    decoder 1    conv1x1 64->16, deconv /2, conv1x1 ->64                            64        H/2
    head         deconv 4x4 /2 64->32, ReLU, conv3x3 32->32, ReLU, conv3x3 32->out   out        H

The output is the logit (sigmoid in the loss and at inference). Every convolution but the
centre's starts from Kaiming-normal (fan-out) initialisation; the centre's keep PyTorch's
default weights with zero biases, as the reference implementation.

Example:
    >>> net = DLinkNet().eval()
    >>> tuple(net(torch.rand(1, 1, 64, 96)).shape)
    (1, 1, 64, 96)
"""

from __future__ import annotations

import torch
from monai.networks.nets import ResNet
from torch import nn

__all__ = ["DLinkNet", "DilatedCentre", "LinkNetDecoder"]


class DilatedCentre(nn.Module):
    """Cascaded 3x3 convolutions dilated 1, 2, 4, 8 (each with ReLU), all summed with the input.

    Example:
        >>> DilatedCentre(8)(torch.rand(1, 8, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 2, 4, 8)) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations])
        for conv in self.convs:
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        y = x
        for conv in self.convs:
            y = torch.relu(conv(y))
            out = out + y
        return out


class LinkNetDecoder(nn.Module):
    """1x1 reduce to a quarter, transposed 3x3 stride 2, 1x1 expand; BN + ReLU after each.

    Example:
        >>> LinkNetDecoder(64, 32)(torch.rand(1, 64, 4, 6)).shape
        torch.Size([1, 32, 8, 12])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = in_channels // 4
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DLinkNet(nn.Module):
    """D-LinkNet with a ResNet-34 encoder (see the module docstring for the layer table).

    Args:
        in_channels: input channels (1: grey EM).
        out_channels: output logits (1: profile / membrane probability after a sigmoid).
        encoder: ``"resnet34"`` (D-LinkNet's; basic blocks 3-4-6-3) or ``"resnet18"`` (LinkNet's; 2-2-2-2).
        width: channels of the first encoder stage (64 in the paper; the later stages double it,
            and the decoders and head scale alike): 32 gives a quarter of the parameters, for CPUs
            and weights that ship small (resnet18 at width 32: 5.3 M parameters).

    Raises:
        ValueError: channel counts below 1, an unknown encoder, a width not a multiple of 8; at
            ``forward``, H or W not a multiple of 32 (naming the nearest valid size).

    Example:
        >>> sum(p.numel() for p in DLinkNet(encoder="resnet18", width=32).parameters()) < 6_000_000
        True
    """

    ENCODERS = {"resnet34": [3, 4, 6, 3], "resnet18": [2, 2, 2, 2]}

    def __init__(self, in_channels: int = 1, out_channels: int = 1, encoder: str = "resnet34", width: int = 64) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
        if encoder not in self.ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(self.ENCODERS)}, got {encoder!r}")
        if width < 8 or width % 8:
            raise ValueError(f"width must be a multiple of 8, got {width}")
        w = [width, 2 * width, 4 * width, 8 * width]
        resnet = ResNet("basic", self.ENCODERS[encoder], w, spatial_dims=2, n_input_channels=in_channels, conv1_t_size=7, conv1_t_stride=2)
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.act, resnet.maxpool)
        self.encoder1, self.encoder2, self.encoder3, self.encoder4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.centre = DilatedCentre(w[3])
        self.decoder4 = LinkNetDecoder(w[3], w[2])
        self.decoder3 = LinkNetDecoder(w[2], w[1])
        self.decoder2 = LinkNetDecoder(w[1], w[0])
        self.decoder1 = LinkNetDecoder(w[0], w[0])
        half = w[0] // 2
        self.head = nn.Sequential(
            nn.ConvTranspose2d(w[0], half, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(half, out_channels, 3, padding=1),
        )  # fmt: skip
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m not in self.centre.convs:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h % 32 != 0 or w % 32 != 0:  # (string concatenation: TorchScript compiles it)
            near_h, near_w = max(32, (h + 16) // 32 * 32), max(32, (w + 16) // 32 * 32)
            raise ValueError(
                "DLinkNet needs H and W that are multiples of 32, got (" + str(h) + ", " + str(w)
                + "); the nearest valid size is (" + str(near_h) + ", " + str(near_w) + ")"
            )  # fmt: skip
        e1 = self.encoder1(self.stem(x))
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        e4 = self.centre(self.encoder4(e3))
        d4 = self.decoder4(e4) + e3
        d3 = self.decoder3(d4) + e2
        d2 = self.decoder2(d3) + e1
        return self.head(self.decoder1(d2))
