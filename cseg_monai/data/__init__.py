"""Data I/O for cseg_monai: MONAI readers with one axis order, ``([Z,] Y, X[, C])``.

Only the readers are imported here, so ``import cseg_monai.data`` stays light.
"""

import importlib

from cseg_monai.data.readers import (
    HDF5_SUFFIXES,
    ITK_SUFFIXES,
    MRC_SUFFIXES,
    N5_SUFFIXES,
    NIFTI_SUFFIXES,
    PIL_SUFFIXES,
    SLICE_SUFFIXES,
    SUPPORTED_SUFFIXES,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    GreyPILReader,
    HDF5Reader,
    ImageReadError,
    ITKVolumeReader,
    MRCReader,
    N5Reader,
    NiftiZYXReader,
    SliceFolderReader,
    TiffVolumeReader,
    ZarrReader,
    em_readers,
    list_images,
    load_image,
    natural_key,
)

__all__ = [
    "HDF5_SUFFIXES",
    "ITK_SUFFIXES",
    "MRC_SUFFIXES",
    "N5_SUFFIXES",
    "NIFTI_SUFFIXES",
    "PIL_SUFFIXES",
    "SLICE_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "TIFF_SUFFIXES",
    "ZARR_SUFFIXES",
    "GreyPILReader",
    "HDF5Reader",
    "ImageReadError",
    "ITKVolumeReader",
    "MRCReader",
    "N5Reader",
    "NiftiZYXReader",
    "SliceFolderReader",
    "TiffVolumeReader",
    "ZarrReader",
    "em_readers",
    "list_images",
    "load_image",
    "natural_key",
]


def __getattr__(name: str):
    """Import the heavier sub-modules (``datasets``, ``phantom``, ``writers``, ``patch_sampling``, ``lazy_volumes``, ``block_store``) on first use."""
    if name in ("datasets", "phantom", "writers", "patch_sampling", "nuclei_phantom", "tube_phantom", "lazy_volumes", "block_store"):
        return importlib.import_module(f"{__name__}.{name}")
    if name in ("CoveringPatchDataset", "grid_starts"):
        return getattr(importlib.import_module(f"{__name__}.patch_sampling"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
