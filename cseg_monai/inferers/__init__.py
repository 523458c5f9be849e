"""Inferers: test-time augmentation, dense centre-voxel inference, block-wise sliding windows (out-of-core inference)."""

from cseg_monai.inferers.block_sliding_window import BlockSlidingWindow, read_box, window_starts
from cseg_monai.inferers.centre_voxel import (
    CentreVoxelInferer,
    DenseCentreVoxelNet,
    centre_voxel_per_patch,
    dense_rewrite,
    reflect_indices,
)
from cseg_monai.inferers.output_select import OutputIndexInferer
from cseg_monai.inferers.tta import DihedralTTAInferer, dihedral_tta

__all__ = ["DihedralTTAInferer", "dihedral_tta"]
__all__ += ["CentreVoxelInferer", "DenseCentreVoxelNet", "centre_voxel_per_patch", "dense_rewrite", "reflect_indices"]
__all__ += ["OutputIndexInferer"]
__all__ += ["BlockSlidingWindow", "read_box", "window_starts"]
