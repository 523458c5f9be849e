"""Inferers: test-time augmentation (and, later, dense centre-voxel and chunked inference)."""

from cseg_monai.inferers.tta import DihedralTTAInferer, dihedral_tta

__all__ = ["DihedralTTAInferer", "dihedral_tta"]
