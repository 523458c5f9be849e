"""Checking uploaded volumes before a GUI job runs them: format, size, dimensions, dtype, values.

Every problem raises :class:`VolumeCheckError` (a ``ValueError``) whose message starts with
the uploaded file's name and says what is wrong and what is accepted, so that the GUI can
show it as it is.

Example:
    >>> import numpy as np, tempfile, tifffile
    >>> path = tempfile.mkdtemp() + "/vol.tif"
    >>> vol = np.random.default_rng(0).integers(0, 255, (4, 16, 16), dtype=np.uint8)
    >>> tifffile.imwrite(path, vol, photometric="minisblack")
    >>> vol = check_volume(path, in_channels=1)
    >>> vol.array.shape, vol.stem
    ((1, 4, 16, 16), 'vol')
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from cseg_monai.data.readers import load_image
from cseg_monai.data.writers import atomic_path

__all__ = ["VOLUME_SUFFIXES", "UploadLimits", "Volume", "VolumeCheckError", "check_volume", "volume_stem", "write_job_input"]

VOLUME_SUFFIXES = (".tif", ".tiff", ".h5", ".hdf5", ".hdf", ".nii", ".nii.gz", ".nrrd", ".mha", ".mrc", ".rec", ".st", ".map")


class VolumeCheckError(ValueError):
    """An uploaded volume the GUI cannot run; the message names the file."""


@dataclass(frozen=True)
class UploadLimits:
    """Upper bounds on one uploaded volume.

    Attributes:
        max_megabytes: file size on disk.
        max_voxels: spatial voxels (Z * Y * X), whatever the channels.
        max_channels: channels (the models take 1 or 2).
    """

    max_megabytes: float = 2048.0
    max_voxels: int = 2**28
    max_channels: int = 2


@dataclass
class Volume:
    """A checked volume.

    Attributes:
        name: the file's name as uploaded.
        stem: output name stem (``vol`` for ``vol.nii.gz``).
        array: ``(C, Z, Y, X)``, the file's dtype.
        spacing: ``(z, y, x)`` voxel size when the file states it, else ``None``.
    """

    name: str
    stem: str
    array: np.ndarray
    spacing: tuple[float, float, float] | None


def volume_stem(name: str) -> str:
    """The file name without its volume suffix (``a.nii.gz`` -> ``a``), safe as a file name.

    Example:
        >>> volume_stem("my cells.nii.gz"), volume_stem("x.h5")
        ('my_cells', 'x')
    """
    base = Path(name).name
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "volume"


def check_volume(
    path: str | os.PathLike,
    in_channels: int,
    dataset: str | None = None,
    limits: UploadLimits | None = None,
    name: str | None = None,
    channel: int | None = None,
    allow_2d: bool = False,
) -> Volume:
    """Read and check one uploaded volume; return it channel-first.

    Accepted: TIFF, HDF5 (one dataset, named by ``dataset`` when the file holds several) and
    NIfTI holding ``(Z, Y, X)``, ``(C, Z, Y, X)`` with C <= ``limits.max_channels`` or an ImageJ
    TIFF with a C axis; with ``allow_2d`` also a grey 2D image ``(Y, X)``, as a volume of one
    plane; integer or float values, finite, not all equal.

    Args:
        path: the uploaded file.
        in_channels: the channels the chosen model takes.
        dataset: array inside an HDF5 file (``None``: the file's only numeric array).
        limits: size limits; default :class:`UploadLimits`.
        name: the name to report (default the file's name; uploads live under temporary names).
        channel: for a volume with more channels than the model takes, the first channel to keep
            (a 2-channel nuclei + membrane stack segmented by a 1-channel nuclei model: 0).
        allow_2d: accept a grey 2D image as ``(1, 1, Y, X)`` (for a model that takes single
            planes, :attr:`~cseg_monai.apps.models.GuiModel.single_plane_2d`).

    Returns:
        The :class:`Volume`.

    Raises:
        VolumeCheckError: naming the file and the problem.

    Example:
        >>> import numpy as np, tempfile, tifffile
        >>> path = tempfile.mkdtemp() + "/flat.tif"
        >>> tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
        >>> check_volume(path, 1)
        Traceback (most recent call last):
        ...
        cseg_monai.apps.volumes.VolumeCheckError: flat.tif: a 2D image of shape (16, 16); the 3D models need a volume (Z, Y, X), e.g. a multi-page TIFF
    """
    limits = limits or UploadLimits()
    path = Path(path)
    label = name or path.name
    if not path.is_file():
        raise VolumeCheckError(f"{label}: no such file")
    if not label.lower().endswith(VOLUME_SUFFIXES):
        raise VolumeCheckError(f"{label}: unsupported file type; upload TIFF (.tif), HDF5 (.h5), NIfTI (.nii, .nii.gz), NRRD, MetaImage (.mha) or MRC")
    megabytes = path.stat().st_size / 2**20
    if megabytes > limits.max_megabytes:
        raise VolumeCheckError(f"{label}: {megabytes:.3g} MB is over the upload limit of {limits.max_megabytes:g} MB")
    is_hdf5 = label.lower().endswith((".h5", ".hdf5", ".hdf"))
    if dataset and not is_hdf5:
        dataset = None  # the dataset name applies to HDF5 uploads only
    source = f"{path}::{dataset}" if dataset else str(path)
    try:
        array, meta = load_image(source)
    except (ValueError, OSError) as err:
        raise VolumeCheckError(f"{label}: {str(err).replace(str(path), '').strip(': ') or type(err).__name__}") from err
    if array.dtype.kind not in "uifb":
        raise VolumeCheckError(f"{label}: values of type {array.dtype} are not an image; expected integers or floats")
    channel_last = meta.get("original_channel_dim") == -1
    if array.ndim == 2 and allow_2d:
        array = array[None]  # one plane; the check below adds the channel axis
    if array.ndim == 2 or (array.ndim == 3 and channel_last):
        colour = " (colour samples last)" if channel_last else ""
        needs = "this model needs a grey image" if allow_2d else "the 3D models need a volume (Z, Y, X), e.g. a multi-page TIFF"
        raise VolumeCheckError(f"{label}: a 2D image of shape {array.shape}{colour}; {needs}")
    if array.ndim == 3:
        array = array[None]
    elif array.ndim == 4 and channel_last:
        array = np.moveaxis(array, -1, 0)
    elif array.ndim == 4 and array.shape[0] <= limits.max_channels:
        pass  # (C, Z, Y, X), as HDF5 and NIfTI store channels
    else:
        raise VolumeCheckError(
            f"{label}: shape {array.shape} is not a volume of 1-{limits.max_channels} channels; expected (Z, Y, X), "
            f"(C, Z, Y, X) with C <= {limits.max_channels}, or an ImageJ TIFF with a C axis"
        )
    if array.shape[0] > limits.max_channels:
        raise VolumeCheckError(f"{label}: {array.shape[0]} channels; at most {limits.max_channels} are accepted")
    if channel is not None:
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < array.shape[0]:
            raise VolumeCheckError(f"{label}: channel {channel!r} does not exist; the volume has channels 0-{array.shape[0] - 1}")
        if array.shape[0] > in_channels:
            array = array[int(channel) : int(channel) + in_channels]
    if array.shape[0] != in_channels:
        hint = f"choose the channel to segment (0-{array.shape[0] - 1}) or another model" if array.shape[0] > in_channels else "choose another model"
        raise VolumeCheckError(f"{label}: {array.shape[0]} channel(s), but the chosen model takes {in_channels}; {hint}")
    voxels = int(np.prod(array.shape[1:]))
    if voxels > limits.max_voxels:
        raise VolumeCheckError(f"{label}: {voxels:,} voxels is over the limit of {limits.max_voxels:,}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise VolumeCheckError(f"{label}: {bad:,} voxels are NaN or infinite")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    lo, hi = array.min(), array.max()
    if lo == hi:
        raise VolumeCheckError(f"{label}: every voxel has the value {lo}; there is nothing to segment")
    spacing = meta.get("spacing")
    if spacing is not None:
        spacing = tuple(float(s) for s in list(spacing)[-3:])
        if len(spacing) != 3 or not all(s > 0 for s in spacing):
            spacing = None
    return Volume(name=label, stem=volume_stem(label), array=array, spacing=spacing)


def write_job_input(volume: Volume, folder: str | os.PathLike) -> Path:
    """Write ``volume`` as a TIFF the bundles read back as ``(C, Z, Y, X)``; return its path.

    One channel: a plain ``(Z, Y, X)`` stack in the file's dtype. Two channels: an ImageJ
    hyperstack with a C axis (uint8, uint16 or float32). Written atomically.

    Example:
        >>> import numpy as np, tempfile
        >>> from cseg_monai.data.readers import load_image
        >>> v = Volume("a.tif", "a", np.zeros((2, 3, 8, 8), np.uint16), None)
        >>> load_image(write_job_input(v, tempfile.mkdtemp()))[0].shape  # channels last, as read
        (3, 8, 8, 2)
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{volume.stem}.tif"
    arr = volume.array
    with atomic_path(out) as tmp:
        if arr.shape[0] == 1:
            tifffile.imwrite(tmp, arr[0], photometric="minisblack")
        else:
            if arr.dtype not in (np.uint8, np.uint16, np.float32):
                arr = arr.astype(np.float32)
            tifffile.imwrite(tmp, np.ascontiguousarray(np.moveaxis(arr, 0, 1)), imagej=True, metadata={"axes": "ZCYX"})
    return out
