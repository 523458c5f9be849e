"""Dense centre-voxel inference one block at a time, exactly as on the whole volume.

A centre-voxel classifier's dense output at a voxel depends only on the patch around it
(:mod:`cseg_monai.inferers.centre_voxel`). A block therefore needs its core plus the patch
halo, mirrored (reflect padding) where it reaches past the volume border, as the whole-volume
inferer pads. With test-time augmentation the halo before and after swap on reversed axes,
so a block reads ``max(before, after)`` on both sides. The result equals
``DihedralTTAInferer(CentreVoxelInferer(...))`` on the whole volume to float rounding.

It has the interface of :class:`~cseg_monai.inferers.block_sliding_window.BlockSlidingWindow`
(``input_box``, a call on a block, ``padding``), so the out-of-core workflow drives both alike.

Example:
    >>> import torch
    >>> from cseg_monai.common.tiling import reflect_indices
    >>> from cseg_monai.networks import build_centre_voxel_net
    >>> net = build_centre_voxel_net("4_conv", 3, spatial_dims=2, patch_size=(32, 32)).eval()
    >>> blocks = BlockCentreVoxel((2, 40, 40), net, n_transforms=2)
    >>> core = ((0, 2), (0, 20), (10, 30))
    >>> box = blocks.input_box(core)
    >>> volume = torch.rand(2, 40, 40)
    >>> block = volume[:, reflect_indices(40, *box[1])][:, :, reflect_indices(40, *box[2])]
    >>> blocks(block, box, core, net).shape
    torch.Size([3, 2, 20, 20])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cseg_monai.common.tiling import check_core, iter_blocks
from cseg_monai.inferers.block_sliding_window import _ACTIVATIONS, Box, _forward, _inverse, _transforms
from cseg_monai.inferers.centre_voxel import CentreVoxelInferer, dense_rewrite
from cseg_monai.networks.centre_voxel import CentreVoxelNet

__all__ = ["BlockCentreVoxel"]


class BlockCentreVoxel:
    """Whole-volume dense centre-voxel inference, block by block, with reflect padding at the border.

    Args:
        volume_shape: the volume's shape without channel; a 2D net on a ``(Z, Y, X)`` stack runs slice by slice.
        net: the classifier (its patch and receptive field set the halo).
        n_transforms: 1, 2, 4 or 8 dihedral transforms of the last two axes.
        activation: ``"softmax"`` (default), ``"sigmoid"`` or ``None``, per transform before the mean.
        device: where the network runs.
        dense_block_size: output tile of the dense inferer within a block (as the bundle's
            ``block_size``, default 256: tiles run faster than one large image and give the same result).

    Raises:
        TypeError: ``net`` is not a CentreVoxelNet. ValueError: a padded net, or bad settings.
    """

    padding = "reflect"

    def __init__(
        self,
        volume_shape: Sequence[int],
        net: CentreVoxelNet,
        n_transforms: int = 1,
        activation: str | None = "softmax",
        device: str | torch.device = "cpu",
        dense_block_size: int | Sequence[int] | None = 256,
    ) -> None:
        if not isinstance(net, CentreVoxelNet):
            raise TypeError(f"net must be a CentreVoxelNet, got {type(net).__name__}")
        if n_transforms not in (1, 2, 4, 8):
            raise ValueError(f"n_transforms must be 1, 2, 4 or 8, got {n_transforms}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, got {activation!r}")
        self.volume_shape = tuple(int(s) for s in volume_shape)
        n = net.spatial_dims
        if len(self.volume_shape) < n or min(self.volume_shape) < 1:
            raise ValueError(f"volume_shape {self.volume_shape} must have at least the net's {n} spatial axes")
        dense = dense_rewrite(net)  # refuses padded nets
        self.halo = tuple(max(p // 2, r - p // 2) for p, r in zip(dense.patch_size, dense.reach))
        self.slice_axes = len(self.volume_shape) - n
        self.transforms = _transforms(n_transforms)
        self.activation_name = activation
        self.device = torch.device(device)
        self.dense_block_size = dense_block_size
        CentreVoxelInferer(block_size=dense_block_size)  # checks it
        self._inferer: CentreVoxelInferer | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_inferer"] = None  # its cache holds weak references; every worker builds its own
        return state

    def _check_core(self, core: Box) -> Box:
        return check_core(core, self.volume_shape)

    def input_box(self, core: Box) -> Box:
        """The core plus the patch halo on both sides of every axis the net sees (may reach outside the volume).

        Example:
            >>> from cseg_monai.networks import build_centre_voxel_net
            >>> net = build_centre_voxel_net("4_conv", 2, spatial_dims=2, patch_size=(32, 32))
            >>> BlockCentreVoxel((64, 64), net).input_box(((0, 16), (16, 32)))
            ((-16, 32), (0, 48))
        """
        core = self._check_core(core)
        lead = self.slice_axes
        return core[:lead] + tuple((a - h, b + h) for (a, b), h in zip(core[lead:], self.halo))

    def __call__(self, block: np.ndarray | torch.Tensor, block_box: Box, core: Box, network: CentreVoxelNet) -> torch.Tensor:
        """Class scores ``(n_classes, *core shape)`` on the CPU for ``core``.

        Args:
            block: the input over ``block_box``, reflect-padded where it reaches past the volume
                (no channel axis), scaled as the net expects.
            block_box: the box ``block`` covers; it must contain :meth:`input_box` (core).
            core: the part of the volume to compute.
            network: the classifier.
        """
        core = self._check_core(core)
        need = self.input_box(core)
        block = torch.as_tensor(np.asarray(block, dtype=np.float32)) if not isinstance(block, torch.Tensor) else block.float()
        if tuple(block.shape) != tuple(b - a for a, b in block_box) or any(n0 < b0 or n1 > b1 for (n0, n1), (b0, b1) in zip(need, block_box)):
            raise ValueError(f"block of shape {tuple(block.shape)} over {block_box} does not cover the input box {need}")
        if self._inferer is None:
            self._inferer = CentreVoxelInferer(block_size=self.dense_block_size)
        dense = self._inferer.dense_net(network)
        before = tuple(p // 2 for p in dense.patch_size)
        after = tuple(r - b for r, b in zip(dense.reach, before))
        lead = self.slice_axes
        crop = tuple(slice(a - b0, b - b0) for (a, b), (b0, _) in zip(need, block_box))
        x = block[crop]
        x = x.reshape((-1, 1) + tuple(x.shape[lead:]))  # slice axes become the batch
        core_spatial = tuple(b - a for a, b in core[lead:])
        activation = _ACTIVATIONS[self.activation_name]
        total = None
        for transform in self.transforms:
            xt = _forward(x, transform)
            core_t = tuple(_forward(torch.empty((1, 1) + core_spatial), transform).shape[2:])
            pads = [(s - c) // 2 for s, c in zip(xt.shape[2:], core_t)]  # the symmetric halo, per axis of the transformed block
            if any(p < max(bf, af) for p, bf, af in zip(pads, before, after)):
                raise ValueError(f"the block's halo {pads} is narrower than the net's reach {list(zip(before, after))} (a non-square patch under rotation?)")
            sizes = self._inferer.block_size
            tile = core_t if sizes is None else tuple(sizes * len(core_t) if len(sizes) == 1 else sizes)
            y = torch.empty((x.shape[0], dense.n_classes) + core_t, dtype=torch.float32)
            # the dense net on tiles of the core only (the block already holds the halo), one image of
            # the batch at a time as the in-memory inferer sees one image
            with torch.no_grad():
                for piece in iter_blocks(core_t, tile, halo=0):
                    sl = tuple(slice(p + a - bf, p + b + af) for (a, b), p, bf, af in zip(piece.core, pads, before, after))
                    for i in range(x.shape[0]):
                        y[(slice(i, i + 1), slice(None)) + piece.core_slices] = dense(xt[(slice(i, i + 1), slice(None)) + sl].to(self.device)).float().cpu()
            y = _inverse(y, transform)
            if activation is not None:
                y = activation(y)
            total = y if total is None else total.add_(y)
        total = total / len(self.transforms)
        shape = tuple(b - a for a, b in core)
        return total.movedim(1, 0).reshape((total.shape[1],) + shape)
