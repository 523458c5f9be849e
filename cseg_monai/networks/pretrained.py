"""Pretrained backbones: export one from a pretext network, load it into a downstream network.

A backbone file (``torch.save``) holds ``{"backbone": state_dict, "meta": {...}}``: the weights of
the network's backbone (:func:`backbone_of`) and what they were trained for (``net``,
``spatial_dims``, ``in_channels``, ``patch_size``, ``pretext``, the pool). The bundles take one with
``--pretrained_backbone PATH`` (and ``--freeze_backbone true`` to train only the head): their
``network`` is ``load_pretrained_backbone(@network_def, @pretrained_backbone, freeze=@freeze_backbone)``.

The backbone of a network is

* its ``backbone`` module (the centre-voxel classifiers and their pretext networks);
* the encoder of a MONAI ``UNet`` (the membrane bundle): its down-sampling layers and the
  bottom layer, named ``down0``, ``down1``, ..., ``bottom``;
* the encoder of a MONAI ``SwinUNETR``: ``swinViT`` and the ``encoder1``-``encoder4``, ``encoder10`` blocks;
* the ``encoders`` of :class:`cseg_monai.networks.UNet3D` (the instance bundle).

The decoders are trained downstream. Any other network is refused by name.

Example:
    >>> import tempfile, torch
    >>> from cseg_monai.networks.registry import build_centre_voxel_net
    >>> path = tempfile.mkdtemp() + "/backbone.pt"
    >>> _ = export_backbone(build_centre_voxel_net("4_conv", 9, spatial_dims=2), path, {"pretext": "centre_region"})
    >>> net = load_pretrained_backbone(build_centre_voxel_net("4_conv", 6, spatial_dims=2), path, freeze=True)
    >>> any(p.requires_grad for p in net.backbone.parameters()), all(p.requires_grad for p in net.head.parameters())
    (False, True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import UNet as MonaiUNet
from monai.networks.nets.swin_unetr import SwinUNETR
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cseg_monai.data.writers import atomic_path

__all__ = ["backbone_of", "backbone_meta", "export_backbone", "load_pretrained_backbone", "unet_encoder"]

_SWIN_ENCODER = ("swinViT", "encoder1", "encoder2", "encoder3", "encoder4", "encoder10")


def unet_encoder(unet: MonaiUNet) -> nn.ModuleDict:
    """The encoder of a MONAI ``UNet``: ``down0``, ``down1``, ..., ``bottom`` (the network's own modules).

    Running them in order gives the features of every level, the last one at the stride of the
    product of the ``strides``.

    Example:
        >>> net = MonaiUNet(2, 1, 2, channels=(8, 16, 32), strides=(2, 2))
        >>> list(unet_encoder(net))
        ['down0', 'down1', 'bottom']
    """
    if not isinstance(unet, MonaiUNet):
        raise ValueError(f"unet_encoder takes a MONAI UNet, got {type(unet).__name__}")
    layers: dict[str, nn.Module] = {}
    block: nn.Module = unet.model
    while isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], SkipConnection):
        layers[f"down{len(layers)}"] = block[0]
        block = block[1].submodule
    layers["bottom"] = block
    return nn.ModuleDict(layers)


def _unwrap(network: nn.Module) -> nn.Module:
    return network.module if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else network


def backbone_of(network: nn.Module) -> nn.Module:
    """The backbone of ``network`` (unwrapping DDP / DataParallel): see the module docs for which.

    Raises:
        ValueError: the network has none (its class is named).
    """
    net = _unwrap(network)
    backbone = getattr(net, "backbone", None)
    if isinstance(backbone, nn.Module):
        return backbone
    if isinstance(net, MonaiUNet):
        return unet_encoder(net)
    if isinstance(net, SwinUNETR):
        return nn.ModuleDict({name: getattr(net, name) for name in _SWIN_ENCODER})
    encoders = getattr(net, "encoders", None)
    if isinstance(encoders, nn.ModuleList):
        return encoders
    raise ValueError(
        f"{type(net).__name__} has no backbone: pretrained backbones fit the centre-voxel nets "
        "(cseg_monai.networks.build_centre_voxel_net) and their pretext networks, the encoders of MONAI UNet and SwinUNETR, "
        "and the encoders of cseg_monai.networks.UNet3D"
    )


def backbone_meta(network: nn.Module, **extra: Any) -> dict[str, Any]:
    """What a backbone was built for: ``net``, ``spatial_dims``, ``in_channels``, ``patch_size`` (+ ``extra``)."""
    net = _unwrap(network)
    first = next((m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    meta: dict[str, Any] = {
        "net": getattr(net, "name", None) or type(net).__name__,
        "spatial_dims": getattr(net, "spatial_dims", None) or getattr(net, "dimensions", None) or (len(first.kernel_size) if first is not None else None),
        "in_channels": getattr(net, "in_channels", None) or (first.in_channels if first is not None else None),
    }
    if isinstance(net, MonaiUNet):
        meta.update(channels=list(net.channels), strides=[list(s) if isinstance(s, (list, tuple)) else s for s in net.strides])
    size = getattr(net, "patch_size", None)  # a centre-voxel net's context patch (SwinUNETR's patch_size is its token size)
    meta["patch_size"] = list(size) if isinstance(size, (list, tuple)) and size else None
    return {**meta, **extra}


def export_backbone(network: nn.Module, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``network``'s backbone weights and ``meta`` to ``path`` (atomically: an old file
    survives a failed write).

    Returns:
        The path written.
    """
    state = {k: v.detach().cpu() for k, v in backbone_of(network).state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"backbone": state, "meta": backbone_meta(network, **(meta or {}))}, tmp)
    return path


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone {path} does not exist")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"pretrained backbone {path}: cannot read it as a torch file ({type(err).__name__}: {err})") from None
    if not isinstance(content, dict) or not isinstance(content.get("backbone"), dict):
        keys = sorted(content)[:8] if isinstance(content, dict) else type(content).__name__
        raise ValueError(
            f"pretrained backbone {path}: expected {{'backbone': state_dict, 'meta': ...}} as written by "
            f"cseg_monai.networks.export_backbone (the pretraining bundle's models/*.pt), got {keys}"
        )
    return content["backbone"], dict(content.get("meta") or {})


def _freeze(backbone: nn.Module) -> None:
    for p in backbone.parameters():
        p.requires_grad_(False)

    def keep_eval(module: nn.Module, _inputs: Any) -> None:  # batch norm keeps the pretrained statistics
        module.train(False)

    # on every batch-norm layer itself: an encoder made of several modules (a UNet's) has no single forward
    for module in backbone.modules():
        if isinstance(module, _BatchNorm):
            module.register_forward_pre_hook(keep_eval)
    backbone.eval()


def load_pretrained_backbone(network: nn.Module, path: str | os.PathLike | None, freeze: bool = False) -> nn.Module:
    """Load the backbone file ``path`` into ``network.backbone``; None returns ``network`` unchanged.

    Args:
        network: a network with a backbone (:func:`backbone_of`).
        path: a file from :func:`export_backbone`, or None.
        freeze: no gradients for the backbone, and its batch-norm layers keep their pretrained
            statistics (eval mode at every forward); only the rest (the head) trains.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a backbone file, or weights that do not fit: the message names the
            missing, unexpected and mis-shaped keys and what the file was trained for.
    """
    if not isinstance(freeze, bool):
        raise ValueError(f"freeze_backbone must be true or false, got {freeze!r}")
    if path is None:
        if freeze:
            raise ValueError("freeze_backbone is true but no pretrained_backbone is given: a frozen random backbone learns nothing")
        return network
    path = Path(path).expanduser()
    state, meta = _read(path)
    backbone = backbone_of(network)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                named = [f"backbone.{k}" for k in keys[:6]]
                parts.append(f"{len(keys)} {label} key(s) {named}{' ...' if len(keys) > 6 else ''}")
        if shapes:
            shown = [f"backbone.{k}: file {tuple(state[k].shape)} vs network {tuple(own[k].shape)}" for k in shapes[:4]]
            parts.append(f"{len(shapes)} key(s) of another shape [{'; '.join(shown)}{' ...' if len(shapes) > 4 else ''}]")
        fields = ("net", "spatial_dims", "in_channels", "patch_size", "channels", "strides")
        trained = {k: meta.get(k) for k in fields if k in meta}
        wanted = {k: v for k, v in backbone_meta(network).items() if k in fields}
        raise ValueError(
            f"pretrained backbone {path} does not fit the configured network: {', '.join(parts)}; "
            f"the file was trained for {trained}, the network is {wanted}"
        )
    backbone.load_state_dict(state)
    if freeze:
        _freeze(backbone)
    return network
