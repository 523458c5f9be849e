"""Input checks that fail early with one clear message naming the file and the problem."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from cseg_monai.transforms._meta import source_name

__all__ = ["ValidateImaged", "ValidateSameShaped"]


class ValidateImaged(MapTransform):
    """Check channel-first images: channel count, spatial rank, emptiness and NaN/inf.

    Args:
        keys: keys to check (after ``EnsureChannelFirstd``).
        num_channels: expected number of channels (1 for grey EM); ``None`` skips the check.
        spatial_dims: expected number of spatial axes (2 or 3); ``None`` skips the check.
        single_plane_2d: with ``spatial_dims=3``, take a 2D image as a volume of one plane
            ``(C, 1, Y, X)`` (a 2D nuclei image for a 3D model whose z is never pooled).
        channel: for an image with more channels than ``num_channels``, the first channel to
            keep (channels ``channel .. channel + num_channels - 1``), e.g. the nuclei channel
            of a 2-channel nuclei + membrane stack; ``None`` keeps them all (and the channel
            check then refuses a surplus).
        allow_constant: accept an image with a single grey value (off by default: an
            all-black or all-white slice is usually a broken file).
        allow_missing_keys: do not raise when a key is absent.

    Example:
        >>> import torch
        >>> ValidateImaged("image", num_channels=1)({"image": torch.rand(3, 8, 8)})
        Traceback (most recent call last):
        ...
        ValueError: <'image' (no file name)>: expected a grey image with 1 channel, got 3 channels (shape (3, 8, 8)); convert colour images to grey first
        >>> ValidateImaged("image", num_channels=1, channel=1)({"image": torch.rand(2, 8, 8)})["image"].shape
        torch.Size([1, 8, 8])
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_channels: int | None = 1,
        spatial_dims: int | None = None,
        allow_constant: bool = False,
        single_plane_2d: bool = False,
        channel: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if channel is not None and (isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or channel < 0):
            raise ValueError(f"channel must be a channel index >= 0 or None, got {channel!r}")
        if channel is not None and num_channels is None:
            raise ValueError("channel needs num_channels: the number of channels to keep from it")
        self.channel = None if channel is None else int(channel)
        self.num_channels = num_channels
        self.spatial_dims = spatial_dims
        self.allow_constant = allow_constant
        self.single_plane_2d = bool(single_plane_2d)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = torch.as_tensor(d[key])
            name = source_name(d, key)
            if self.single_plane_2d and self.spatial_dims == 3 and img.ndim == 3:
                img = _as_single_plane(d[key])
                d[key] = img
            if self.channel is not None and img.shape[0] > self.num_channels:  # channel implies num_channels (checked above)
                if self.channel + self.num_channels > img.shape[0]:
                    raise ValueError(
                        f"{name}: channel {self.channel} does not exist or leaves fewer than {self.num_channels} channel(s); "
                        f"the image has channels 0-{img.shape[0] - 1} (shape {tuple(img.shape)})"
                    )
                img = d[key][self.channel : self.channel + self.num_channels].clone()  # a copy: the other channels' memory is freed
                d[key] = img
            shape = tuple(img.shape)
            if img.numel() == 0:
                raise ValueError(f"{name}: empty image (shape {shape})")
            if self.num_channels is not None and shape[0] != self.num_channels:
                kind = "a grey image with 1 channel" if self.num_channels == 1 else f"{self.num_channels} channels"
                raise ValueError(
                    f"{name}: expected {kind}, got {shape[0]} channels (shape {shape})"
                    + ("; convert colour images to grey first" if self.num_channels == 1 else "")
                )
            if self.spatial_dims is not None and img.ndim - 1 != self.spatial_dims:
                hint = ""
                if img.ndim - 1 > self.spatial_dims:
                    extra = shape[1 : img.ndim - self.spatial_dims]
                    hint = (
                        f": the leading axis of length {extra[0]} is a time or channel axis the file does not name;"
                        " save one volume per file, or the channels as an ImageJ 'C' axis (TIFF) the model takes"
                        if len(extra) == 1
                        else ""
                    )
                raise ValueError(
                    f"{name}: expected {self.spatial_dims} spatial axes, got {img.ndim - 1} (shape {shape}){hint}"
                )
            if img.is_floating_point() and not torch.isfinite(img).all():
                n_bad = int((~torch.isfinite(img)).sum())
                raise ValueError(f"{name}: {n_bad} NaN or infinite values")
            if not self.allow_constant and bool(img.min() == img.max()):
                raise ValueError(f"{name}: the image is constant ({float(img.min())} everywhere): empty or broken file?")
        return d


def _as_single_plane(x: Any) -> torch.Tensor:
    """``(C, Y, X)`` -> ``(C, 1, Y, X)``, the meta data's 2-axis spacing given a z entry (the in-plane y)."""
    out = x.unsqueeze(1)
    meta = getattr(x, "meta", None)
    if meta is not None:
        meta = dict(meta)
        sp = meta.get("spacing")
        if sp is not None and len(np.asarray(sp).reshape(-1)) == 2:
            sp = np.asarray(sp, dtype=np.float64).reshape(-1)
            meta["spacing"] = np.concatenate([sp[:1], sp])
        meta["single_plane_2d"] = True
        out = MetaTensor(out.as_tensor() if isinstance(out, MetaTensor) else out, meta=meta)
    return out


class ValidateSameShaped(MapTransform):
    """Check that the items under ``keys`` share one spatial shape (e.g. image and label).

    Args:
        keys: two or more keys, channel first.
        allow_missing_keys: do not raise when a key is absent.

    Example:
        >>> import torch
        >>> ValidateSameShaped(["image", "label"])({"image": torch.zeros(1, 4, 4), "label": torch.zeros(1, 4, 5)})
        Traceback (most recent call last):
        ...
        ValueError: spatial shapes differ: <'image' (no file name)> is (4, 4) but <'label' (no file name)> is (4, 5)
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        ref = keys[0]
        ref_shape = tuple(d[ref].shape[1:])
        for key in keys[1:]:
            shape = tuple(d[key].shape[1:])
            if shape != ref_shape:
                raise ValueError(
                    f"spatial shapes differ: {source_name(d, ref)} is {ref_shape} but {source_name(d, key)} is {shape}"
                )
        return d
