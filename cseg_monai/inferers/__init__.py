"""Inferers: test-time augmentation (and, later, dense centre-voxel and chunked inference)."""

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
