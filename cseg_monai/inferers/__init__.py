"""Inferers: test-time augmentation (16 flips / transposes; the dihedral 8), dense centre-voxel inference,
block-wise sliding windows (out-of-core inference)."""

from cseg_monai.inferers.block_sliding_window import BlockSlidingWindow, read_box, window_starts
from cseg_monai.inferers.centre_voxel import (
    CentreVoxelInferer,
    DenseCentreVoxelNet,
    centre_voxel_per_patch,
    dense_rewrite,
    reflect_indices,
)
from cseg_monai.inferers.output_select import OutputIndexInferer
from cseg_monai.inferers.tta import FLIP_TRANSPOSE_16, DihedralTTAInferer, FlipTransposeTTAInferer, dihedral_tta, flip_transpose_tta

__all__ = ["DihedralTTAInferer", "dihedral_tta", "FlipTransposeTTAInferer", "flip_transpose_tta", "FLIP_TRANSPOSE_16"]
__all__ += ["CentreVoxelInferer", "DenseCentreVoxelNet", "centre_voxel_per_patch", "dense_rewrite", "reflect_indices"]
__all__ += ["OutputIndexInferer"]
__all__ += ["BlockSlidingWindow", "read_box", "window_starts"]
