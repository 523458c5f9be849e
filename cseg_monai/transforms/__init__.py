"""MONAI dictionary transforms of cseg-monai (label conversions, checks, writers, EM augmentations)."""

from cseg_monai.transforms.axon_sections import LoadAxonSectionsd
from cseg_monai.transforms.centre_voxel_tiles import CentreVoxelGridd, CentreVoxelTiled, RandCentreVoxelTiled, tile_size
from cseg_monai.transforms.clefts import CleftComponentsd, LoadCleftd, cleft_components
from cseg_monai.transforms.em_augment import (
    RandElasticd,
    RandFlipTransposed,
    RandMisalignmentd,
    RandMissingBandd,
    RandMissingSectiond,
    RandMotionBlurd,
    RandSectionIntensityd,
)
from cseg_monai.transforms.instance_targets import (
    InstanceTargetsd,
    boundary_target,
    class_balance_weights,
    unet_weight_map,
)
from cseg_monai.transforms.instances import LoadInstancesd, RandPoissonNoised
from cseg_monai.transforms.io import SaveTiffd, output_stem
from cseg_monai.transforms.labels import MembraneMaskd
from cseg_monai.transforms.organelles import LoadOrganelled, ScaleOrganelleIntensityd
from cseg_monai.transforms.pretext import CUBE_METHODS, MaskCentreRegiond, MaskCubesd, PixProViewsd, centre_region_slices, paste_centre_region
from cseg_monai.transforms.spacing import RescalePlan, RescaleToInputd, RescaleToSpacingd
from cseg_monai.transforms.sparse_sampling import RandSparseCentreVoxelPatchd
from cseg_monai.transforms.validation import ValidateImaged, ValidateSameShaped

__all__ = [
    "LoadCleftd",
    "LoadAxonSectionsd",
    "CleftComponentsd",
    "cleft_components",
    "RandElasticd",
    "RandFlipTransposed",
    "RandMisalignmentd",
    "RandMissingBandd",
    "RandMissingSectiond",
    "RandMotionBlurd",
    "RandSectionIntensityd",
    "MaskCentreRegiond",
    "MaskCubesd",
    "PixProViewsd",
    "CUBE_METHODS",
    "centre_region_slices",
    "paste_centre_region",
    "MembraneMaskd",
    "RescalePlan",
    "RescaleToInputd",
    "RescaleToSpacingd",
    "SaveTiffd",
    "ValidateImaged",
    "ValidateSameShaped",
    "output_stem",
    "RandSparseCentreVoxelPatchd",
    "RandCentreVoxelTiled",
    "CentreVoxelTiled",
    "CentreVoxelGridd",
    "tile_size",
    "LoadOrganelled",
    "ScaleOrganelleIntensityd",
    "InstanceTargetsd",
    "LoadInstancesd",
    "RandPoissonNoised",
    "boundary_target",
    "class_balance_weights",
    "unet_weight_map",
]
