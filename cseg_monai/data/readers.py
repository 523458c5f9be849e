"""MONAI image readers for EM / microscopy files with ONE axis convention.

Axis convention (every reader here, and :func:`load_image`):

* 2D images are ``(Y, X)``: row index first, exactly as ``numpy.asarray(PIL.Image)``.
  MONAI's own ``PILReader`` swaps this to ``(X, Y)``; these readers never do.
* Volumes are ``(Z, Y, X)``; a 4D TIFF such as a time series stays ``(T, Z, Y, X)``.
* Colour samples (RGB, an ImageJ ``C`` axis) go LAST: ``(Y, X, 3)``. Only then is
  ``meta["original_channel_dim"] = -1``; otherwise it is ``float("nan")``, which
  MONAI's ``EnsureChannelFirst`` reads as "no channel" and answers with a new
  leading axis of length 1. So ``LoadImage(reader=em_readers(),
  ensure_channel_first=True)`` gives ``(1, Z, Y, X)`` for a grey volume and
  ``(3, Y, X)`` for a colour image.
* ``meta["affine"]`` is a homogeneous matrix, identity scaled by the spacing,
  in the array's own axis order (``affine[0, 0]`` is the spacing of axis 0). It
  is 4x4 for up to 3 spatial axes, as MONAI expects, and (n+1)x(n+1) beyond.
  ``meta["spacing"]`` (same order) is only present when the file states it, with
  ``meta["spacing_unit"]`` when the unit is known too.

Readers and what they assume:

* :class:`GreyPILReader` - PNG/JPEG/BMP/GIF; grey-looking RGB(A)/LA collapse to 2D.
* :class:`TiffVolumeReader` - every page of a TIFF through ``tifffile``.
* :class:`HDF5Reader` / :class:`ZarrReader` - one named array (``file.h5::raw``).
* :class:`N5Reader` - one dataset of an N5 container (BigDataViewer, BigStitcher, Paintera)
  through ``tensorstore``, its ``(X, Y, Z)`` dimensions and resolution reversed to ``(Z, Y, X)``.
* :class:`NiftiZYXReader` - NIfTI, transposed from its ``(X, Y, Z)`` to ``(Z, Y, X)``.
* :class:`ITKVolumeReader` - NRRD and MetaImage (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``)
  through MONAI's ``ITKReader`` (``itk-io``), spacing reversed to ``(Z, Y, X)``.
* :class:`MRCReader` - MRC / IMOD (``.mrc``, ``.rec``, ``.st``, ``.map``) through ``mrcfile``,
  voxel size from angstrom to nm.
* :class:`SliceFolderReader` - a folder of 2D slices in natural order -> ``(Z, Y, X)``.

Errors: a missing path raises ``FileNotFoundError``; a 0-byte, corrupt or truncated
file, or an array with a zero-sized axis, raises :class:`ImageReadError` (a
``ValueError``) naming the file. Through MONAI's ``LoadImage`` the same problem
surfaces as a ``RuntimeError`` whose text is our message (its ``__cause__`` is the
typed error): a reader here never hands a file of its own suffix on to MONAI's
fallback readers, which would read a truncated PNG/TIFF with an anonymous
``OSError`` or a TIFF stack as its first page in ``(X, Y)`` order.

Example:
    >>> import numpy as np, tempfile, tifffile
    >>> from monai.transforms import LoadImage
    >>> path = tempfile.mkdtemp() + "/stack.tif"
    >>> tifffile.imwrite(path, np.zeros((4, 5, 6), np.uint8), photometric="minisblack")
    >>> load_image(path)[0].shape
    (4, 5, 6)
    >>> LoadImage(reader=em_readers(), ensure_channel_first=True)(path).shape
    torch.Size([1, 4, 5, 6])
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import mrcfile
import nibabel as nib
import numpy as np
import tensorstore as ts
import tifffile
import zarr
from monai.data import ImageReader, ITKReader
from monai.utils import ensure_tuple
from PIL import Image

__all__ = [
    "ImageReadError",
    "GreyPILReader",
    "TiffVolumeReader",
    "HDF5Reader",
    "ZarrReader",
    "N5Reader",
    "NiftiZYXReader",
    "SliceFolderReader",
    "em_readers",
    "load_image",
    "list_images",
    "slice_files",
    "natural_key",
    "PIL_SUFFIXES",
    "TIFF_SUFFIXES",
    "HDF5_SUFFIXES",
    "ZARR_SUFFIXES",
    "N5_SUFFIXES",
    "NIFTI_SUFFIXES",
    "ITK_SUFFIXES",
    "MRC_SUFFIXES",
    "SLICE_SUFFIXES",
    "SUPPORTED_SUFFIXES",
]

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
ZARR_SUFFIXES = (".zarr",)
N5_SUFFIXES = (".n5",)
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
MRC_SUFFIXES = (".mrc", ".mrcs", ".rec", ".st", ".map")
SLICE_SUFFIXES = PIL_SUFFIXES + TIFF_SUFFIXES
FILE_SUFFIXES = SLICE_SUFFIXES + HDF5_SUFFIXES + NIFTI_SUFFIXES + ITK_SUFFIXES + MRC_SUFFIXES
SUPPORTED_SUFFIXES = FILE_SUFFIXES + ZARR_SUFFIXES + N5_SUFFIXES
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
_CONTAINER_RE = re.compile(r"^(?P<path>.*?\.(?:h5|hdf5|hdf|zarr|n5))::(?P<dataset>.*)$", re.IGNORECASE)


class ImageReadError(ValueError):
    """A file exists but cannot be read as an image: empty, corrupt, ambiguous or unsupported."""


def natural_key(name: str | Path) -> list:
    """Sort key comparing digit runs as numbers, so ``"2.png" < "10.png"``.

    Example:
        >>> sorted(["10.png", "2.png", "1.png"], key=natural_key)
        ['1.png', '2.png', '10.png']
    """
    text = Path(name).name
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)] + [text]


def _has_suffix(name: str, suffixes: Sequence[str]) -> bool:
    return name.lower().endswith(tuple(suffixes))


def _split_dataset(name: str) -> tuple[str, str | None]:
    """``"a/b.h5::grp/raw"`` -> ``("a/b.h5", "grp/raw")``; other names pass through."""
    match = _CONTAINER_RE.match(str(name))
    if match is None:
        return str(name), None
    return match["path"], match["dataset"].replace("\\", "/").strip("/") or None


def _missing(path: str | Path) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))


def _check_file(path: str, fmt: str) -> None:
    """Raise FileNotFoundError / ImageReadError for a missing, non-file or 0-byte path."""
    if not os.path.exists(path):
        raise _missing(path)
    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: not a file, cannot read it as {fmt}")
    if os.path.getsize(path) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes), not a valid {fmt} file")


def _corrupt(path: str, fmt: str, exc: BaseException | None = None) -> ImageReadError:
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return ImageReadError(f"{path}: corrupt or not a {fmt} file{detail}")


def _make_meta(
    path: str,
    array: np.ndarray,
    channel_last: bool = False,
    spacing: Sequence[float] | None = None,
    spacing_unit: str | None = None,
    **extra: Any,
) -> dict:
    """Build the MONAI meta dict; raise ImageReadError for a zero-sized axis."""
    if array.size == 0:
        raise ImageReadError(f"{path}: empty image (shape {tuple(array.shape)})")
    spatial = array.shape[:-1] if channel_last else array.shape
    ndim = len(spatial)
    affine = np.eye(max(ndim, 3) + 1)
    meta: dict = {
        "filename_or_obj": str(path),
        "spatial_shape": np.asarray(spatial),
        "original_channel_dim": -1 if channel_last else float("nan"),
    }
    if spacing is not None:
        spacing = np.asarray(spacing, dtype=np.float64)
        if spacing.shape != (ndim,):
            raise ImageReadError(f"{path}: spacing {spacing.tolist()} does not match {ndim} spatial axes")
        affine[np.arange(ndim), np.arange(ndim)] = spacing
        meta["spacing"] = spacing
        if spacing_unit:
            meta["spacing_unit"] = str(spacing_unit)
    meta["affine"] = affine
    meta.update({k: v for k, v in extra.items() if v is not None})
    return meta


class _Loaded:
    """What ``read`` hands to ``get_data``: the array and meta, or the error to raise."""

    def __init__(
        self,
        name: str,
        array: np.ndarray | None = None,
        meta: dict | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.name, self.array, self.meta, self.error = name, array, meta or {}, error


class _EMReader(ImageReader):
    """Shared MONAI plumbing: suffix checks, eager loading, deferred errors, stacking."""

    suffixes: tuple[str, ...] = ()
    format_name = "image"

    def _accepts(self, name: str) -> bool:
        return _has_suffix(name, self.suffixes)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True when every name in ``filename`` has a suffix this reader handles."""
        names = ensure_tuple(filename)
        return len(names) > 0 and all(self._accepts(str(n)) for n in names)

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        """Read one path into ``(array, meta)``, raising typed errors (FileNotFoundError, ImageReadError)."""
        raise NotImplementedError

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Any:
        """Load each path eagerly. Paths of other formats raise ValueError (MONAI then tries the next
        reader); a failure on a path of our own format is kept and raised by :meth:`get_data`, so that
        MONAI does not fall back to a reader with another axis order."""
        names = [str(n) for n in ensure_tuple(data)]
        if not self.verify_suffix(names):
            raise ValueError(
                f"{type(self).__name__} does not read {names}: it handles "
                f"{' '.join(self.suffixes) or 'folders of 2D slices'}"
            )
        loaded = []
        for name in names:
            try:
                loaded.append(_Loaded(name, *self.load(name)))
            except Exception as exc:  # reported by get_data, see above
                loaded.append(_Loaded(name, error=exc))
        return loaded if len(loaded) > 1 else loaded[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Return ``(array, meta)``; several files are stacked on a new first (channel) axis, or
        concatenated on their channel axis, as MONAI's readers do."""
        items = list(img) if isinstance(img, (list, tuple)) else [img]
        for item in items:
            if item.error is not None:
                raise RuntimeError(f"{type(self).__name__}: {type(item.error).__name__}: {item.error}") from item.error
        array, meta = items[0].array, dict(items[0].meta)
        if len(items) == 1:
            return array, meta
        for item in items[1:]:
            if item.array.shape != array.shape:
                raise RuntimeError(f"{item.name}: shape {item.array.shape} differs from {items[0].name} {array.shape}")
        if np.isnan(meta["original_channel_dim"]):
            meta["original_channel_dim"] = 0
            return np.stack([i.array for i in items]), meta
        return np.concatenate([i.array for i in items], axis=-1), meta


class GreyPILReader(_EMReader):
    """PNG/JPEG/BMP/GIF through Pillow as ``(Y, X)`` (no axis swap, unlike MONAI's PILReader).

    * ``L`` -> uint8, ``I;16*`` -> uint16, ``I`` -> int32, ``F`` -> float32.
    * ``1`` (bilevel) -> uint8 with values 0/255, exactly ``PIL.Image.convert("L")``, so it
      matches 8-bit masks of the same data.
    * Alpha is dropped. ``LA``, and ``RGB(A)``/palette images whose colour channels are all
      equal, become 2D grey (equal to ``convert("L")``); truly coloured images become
      ``(Y, X, 3)`` uint8 with ``original_channel_dim = -1``.
    * Multi-frame files (animated GIF/APNG) are refused. PNG print resolution (dpi) is not spacing.

    Example:
        >>> import numpy as np, tempfile
        >>> from PIL import Image
        >>> path = tempfile.mkdtemp() + "/a.png"
        >>> Image.fromarray(np.arange(6, dtype=np.uint8).reshape(2, 3)).save(path)
        >>> GreyPILReader().load(path)[0].shape
        (2, 3)
    """

    suffixes = PIL_SUFFIXES
    format_name = "PNG/JPEG/BMP/GIF"

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        path = str(name)
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower(), Path(path).suffix[1:].upper())
        _check_file(path, fmt)
        try:
            with Image.open(path) as img:
                if getattr(img, "n_frames", 1) > 1:
                    raise ImageReadError(f"{path}: has {img.n_frames} frames; only single-frame images are read")
                img.load()
                array = self._to_array(img)
                mode = img.mode
        except ImageReadError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageReadError(
                f"{path}: larger than Pillow's safety limit ({exc}); to read it, set "
                "PIL.Image.MAX_IMAGE_PIXELS = None, or store such images as TIFF"
            ) from exc
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad data
            raise _corrupt(path, fmt, exc) from exc
        return array, _make_meta(path, array, channel_last=array.ndim == 3, format=fmt, mode=mode)

    @staticmethod
    def _to_array(img: Any) -> np.ndarray:
        mode = img.mode
        if mode in ("L", "I", "F"):
            return np.array(img)
        if mode.startswith("I;16"):
            return np.array(img).astype(np.uint16)  # native byte order
        if mode == "1":
            return np.array(img.convert("L"))
        if mode in ("LA", "La"):
            return np.array(img.getchannel(0))
        rgb = np.array(img.convert("RGB"))
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
            return np.ascontiguousarray(rgb[..., 0])
        return rgb


class _TiffWarnings(logging.Handler):
    """Collect tifffile's warnings from this thread (it logs, not raises, on a broken page chain)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread, self.messages = threading.get_ident(), []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


class TiffVolumeReader(_EMReader):
    """TIFF through ``tifffile``, ALL pages (MONAI's PILReader keeps only the first).

    One page -> ``(Y, X)``, a stack -> ``(Z, Y, X)``, a time series -> ``(T, Z, Y, X)`` (the
    first tifffile series, ``meta["axes"]`` gives its axis letters). RGB samples (``S``) or an
    ImageJ channel axis (``C``) are moved last (``original_channel_dim = -1``). Spacing comes
    from ImageJ metadata only (``XResolution``/``YResolution`` in pixels per ``unit``, ``spacing``
    for Z); plain TIFF resolution tags are usually print DPI and are ignored. Several series of
    one shape are stacked on a new first axis; pages of different shapes, or a page chain that
    ends past the end of the file, are errors.

    Example:
        >>> import numpy as np, tempfile, tifffile
        >>> path = tempfile.mkdtemp() + "/s.tif"
        >>> tifffile.imwrite(path, np.zeros((3, 4, 5), np.uint8), photometric="minisblack")
        >>> TiffVolumeReader().load(path)[0].shape
        (3, 4, 5)
    """

    suffixes = TIFF_SUFFIXES
    format_name = "TIFF"

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        path = str(name)
        _check_file(path, "TIFF")
        log, catcher = logging.getLogger("tifffile"), _TiffWarnings()
        old_level = log.level
        if not log.isEnabledFor(logging.WARNING):  # the warnings must reach our handler
            log.setLevel(logging.WARNING)
        log.addHandler(catcher)
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series
                if len(series) > 1 and len({s.shape for s in series}) > 1:
                    shapes = ", ".join(str(s.shape) for s in series[:5])
                    raise ImageReadError(f"{path}: pages of different shapes ({shapes}); cannot stack them")
                if len(series) > 1:  # e.g. pages appended in several writes: stack them, in file order
                    array, axes = np.stack([s.asarray() for s in series]), "I" + series[0].axes
                else:
                    array, axes = series[0].asarray(), series[0].axes
                spacing = self._imagej_spacing(tif, axes)
                unit = (tif.imagej_metadata or {}).get("unit")
        except ImageReadError:
            raise
        except Exception as exc:
            raise _corrupt(path, "TIFF", exc) from exc
        finally:
            log.removeHandler(catcher)
            log.setLevel(old_level)
        broken = [m for m in catcher.messages if re.search(r"invalid page offset|truncat|failed to read", m)]
        if broken:
            raise ImageReadError(f"{path}: corrupt or not a TIFF file (truncated? tifffile: {broken[0]})")
        channel = [i for i, a in enumerate(axes) if a in "CS"]
        if len(channel) > 1:
            raise ImageReadError(f"{path}: axes {axes!r} have more than one channel axis")
        if channel:
            array = np.moveaxis(array, channel[0], -1)
            axes = axes.replace(axes[channel[0]], "") + axes[channel[0]]
            spacing = None if spacing is None else [s for i, s in enumerate(spacing) if i != channel[0]]
        meta = _make_meta(
            path, array, channel_last=bool(channel), spacing=spacing, spacing_unit=unit, format="TIFF", axes=axes
        )
        return array, meta

    @staticmethod
    def _imagej_spacing(tif: Any, axes: str) -> list[float] | None:
        """Spacing per axis of ``axes`` from ImageJ metadata (1.0 for unstated axes), or None."""
        ij = tif.imagej_metadata
        if not ij:
            return None
        tags = tif.pages[0].tags
        per_axis = {}
        for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
            if tag in tags:
                num, den = tags[tag].value  # pixels per unit, as a fraction
                if "unit" in ij or (num, den) != (1, 1):
                    per_axis[axis] = den / num if num else 1.0
        if "spacing" in ij:
            per_axis["Z"] = float(ij["spacing"])
        if not per_axis:
            return None
        return [per_axis.get(a, 1.0) for a in axes]


class _ContainerReader(_EMReader):
    """HDF5 / Zarr: one array chosen by ``dataset``, the ``::dataset`` path suffix, or uniqueness."""

    def __init__(self, dataset: str | None = None) -> None:
        self.dataset = dataset

    def _accepts(self, name: str) -> bool:
        return _has_suffix(_split_dataset(name)[0].rstrip("/\\"), self.suffixes)

    def _choose(self, path: str, wanted: str | None, available: list[str]) -> str:
        if wanted is not None:
            if wanted.strip("/") not in available:
                raise ImageReadError(
                    f"{path}: no array dataset {wanted!r}; available datasets: {', '.join(available) or 'none'}"
                )
            return wanted.strip("/")
        if len(available) == 1:
            return available[0]
        if not available:
            raise ImageReadError(f"{path}: empty {self.format_name} container, it holds no array dataset")
        raise ImageReadError(
            f"{path}: holds {len(available)} array datasets, name one (dataset='...' or "
            f"'{Path(path).name}::NAME'); available datasets: {', '.join(available)}"
        )

    @staticmethod
    def _spacing(array: np.ndarray, *attr_sources: Any) -> tuple[np.ndarray | None, str | None]:
        """``(spacing, unit)`` from ``element_size_um`` (unit "um") or ``resolution`` (unit unknown),
        taken from the first attribute source holding one whose length is the number of axes."""
        for attrs in attr_sources:
            for key, unit in (("element_size_um", "um"), ("resolution", None)):
                if key in attrs:
                    value = np.asarray(attrs[key], dtype=np.float64).ravel()
                    if value.shape == (array.ndim,):
                        return value, unit
        return None, None


class HDF5Reader(_ContainerReader):
    """One dataset of an HDF5 file, axes as stored (``(Z, Y, X)`` for EM volumes).

    The dataset is ``dataset=``, or given in the path as ``"file.h5::group/raw"`` (this wins,
    and works through ``LoadImage``); with neither, a file holding exactly one numeric array
    is read, otherwise ImageReadError (a ValueError) lists the available datasets. Spacing
    is the attribute ``element_size_um`` or ``resolution`` (dataset first, then the file root)
    when its length equals the number of axes. All axes are spatial (no channel).

    Example:
        >>> import h5py, numpy as np, tempfile
        >>> path = tempfile.mkdtemp() + "/v.h5"
        >>> with h5py.File(path, "w") as f:
        ...     f["raw"] = np.zeros((2, 3, 4), np.uint8)
        ...     f["label"] = np.zeros((2, 3, 4), np.uint16)
        >>> HDF5Reader("raw").load(path)[0].shape
        (2, 3, 4)
        >>> HDF5Reader().load(path + "::label")[0].dtype
        dtype('uint16')
    """

    suffixes = HDF5_SUFFIXES
    format_name = "HDF5"

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        path, wanted = _split_dataset(str(name))
        wanted = wanted or self.dataset
        _check_file(path, "HDF5")
        if not h5py.is_hdf5(path):
            raise _corrupt(path, "HDF5")
        try:
            with h5py.File(path, "r") as h5:
                available: list[str] = []
                h5.visititems(
                    lambda n, o: available.append(n)
                    if isinstance(o, h5py.Dataset) and o.ndim > 0 and o.dtype.kind in "biuf"
                    else None
                )
                key = self._choose(path, wanted, available)
                dset = h5[key]
                array = dset[()]
                spacing, unit = self._spacing(array, dset.attrs, h5.attrs)
        except ImageReadError:
            raise
        except Exception as exc:
            raise _corrupt(path, "HDF5", exc) from exc
        return array, _make_meta(path, array, spacing=spacing, spacing_unit=unit, format="HDF5", dataset=key)


class ZarrReader(_ContainerReader):
    """One array of a Zarr store (v2 or v3 layout; a folder named ``*.zarr`` or holding zarr
    metadata), with the same dataset rules as :class:`HDF5Reader` (``"store.zarr::grp/raw"``).

    Example:
        >>> import numpy as np, tempfile, zarr
        >>> path = tempfile.mkdtemp() + "/v.zarr"
        >>> zarr.open_array(path, mode="w", shape=(2, 3, 4), dtype="u1")[:] = 7
        >>> ZarrReader().load(path)[0].sum()
        np.uint64(168)
    """

    suffixes = ZARR_SUFFIXES
    format_name = "Zarr"

    def _accepts(self, name: str) -> bool:
        path = _split_dataset(name)[0]
        return super()._accepts(name) or (
            os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in _ZARR_MARKERS)
        )

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        path, wanted = _split_dataset(str(name))
        wanted = wanted or self.dataset
        if not os.path.exists(path):
            raise _missing(path)
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes), not a valid Zarr store")
        if os.path.isdir(path) and not os.listdir(path):
            raise ImageReadError(f"{path}: empty folder, not a valid Zarr store")
        try:
            node = zarr.open(store=path, mode="r")
        except Exception as exc:
            raise _corrupt(path, "Zarr", exc) from exc
        try:
            if isinstance(node, zarr.Array):
                if wanted is not None:
                    raise ImageReadError(f"{path}: is a single array; no dataset {wanted!r} inside it")
                key, arr, attr_sources = None, node, (node.attrs,)
            else:
                key = self._choose(path, wanted, [n for n, _ in self._walk(node)])
                arr, attr_sources = node[key], (node[key].attrs, node.attrs)
            array = np.asarray(arr[...])
            spacing, unit = self._spacing(array, *attr_sources)
        except ImageReadError:
            raise
        except Exception as exc:
            raise _corrupt(path, "Zarr", exc) from exc
        return array, _make_meta(path, array, spacing=spacing, spacing_unit=unit, format="ZARR", dataset=key)

    @classmethod
    def _walk(cls, group: Any, prefix: str = ""):
        for name, arr in sorted(group.arrays(), key=lambda t: t[0]):
            if arr.ndim > 0:
                yield prefix + name, arr
        for name, sub in sorted(group.groups(), key=lambda t: t[0]):
            yield from cls._walk(sub, prefix + name + "/")


def _n5_attributes(folder: str) -> dict:
    """The ``attributes.json`` of an N5 group or dataset folder (``{}`` when it has none)."""
    file = os.path.join(folder, "attributes.json")
    if not os.path.isfile(file):
        return {}
    with open(file, encoding="utf-8") as handle:
        attrs = json.load(handle)
    if not isinstance(attrs, dict):
        raise ValueError(f"{file} holds {type(attrs).__name__}, not a JSON object")
    return attrs


def _is_n5_dataset(attrs: dict) -> bool:
    return "dimensions" in attrs and "dataType" in attrs


def n5_datasets(root: str) -> list[str]:
    """The datasets of an N5 container, as ``/``-joined paths below ``root`` in natural order.

    A BigDataViewer / Paintera multiscale group (datasets ``s0``, ``s1``, ...) is listed as its
    group name and stands for its full-resolution level ``s0``.
    """
    found: list[str] = []
    for folder, subdirs, _ in os.walk(root):
        subdirs.sort(key=natural_key)
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        attrs = _n5_attributes(folder)
        if _is_n5_dataset(attrs):
            subdirs[:] = []  # block folders
            parent, _, leaf = rel.rpartition("/")
            if not (re.fullmatch(r"s\d+", leaf) and _is_n5_dataset(_n5_attributes(os.path.join(root, parent, "s0")))):
                found.append("" if rel == "." else rel)
            elif leaf == "s0":
                found.append(parent)
    return found


def open_n5(path: str, dataset: str | None) -> tuple[Any, str, tuple[float, ...] | None, str | None]:
    """Open one N5 dataset lazily: ``(array, key, spacing, unit)``, all in ``(Z, Y, X)`` order.

    ``array`` is a ``tensorstore`` view whose ``array[box].read().result()`` reads the box.
    N5 lists dimensions fastest-first (``(X, Y, Z)``, as Java writes them); the view and the
    spacing are reversed to the readers' ``(Z, Y, X)``. The spacing is ``pixelResolution``
    (``{"dimensions": [...], "unit": "um"}``, N5-viewer / BigDataViewer) or ``resolution``
    (Paintera), from the dataset, else its multiscale group, else the root.

    Raises:
        ImageReadError: not an N5 container, no such dataset, several datasets and none named,
            or metadata tensorstore refuses (names the folder).
    """
    if not os.path.isdir(path):
        raise ImageReadError(f"{path}: not a folder, an N5 container is one")
    try:
        available = n5_datasets(path)
    except (OSError, ValueError) as exc:
        raise _corrupt(path, "N5", exc) from exc
    if not available:
        raise ImageReadError(f"{path}: empty N5 container or not N5, it holds no dataset (no attributes.json with 'dimensions')")
    key = _ContainerReader()._choose(path, dataset, available)
    folder = os.path.join(path, key)
    leaf = folder if _is_n5_dataset(_n5_attributes(folder)) else os.path.join(folder, "s0")
    try:
        store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": leaf}, "open": True}, read=True).result()
    except Exception as exc:
        raise _corrupt(path, "N5", exc) from exc
    spacing, unit = None, None
    for attrs in (_n5_attributes(leaf), _n5_attributes(folder), _n5_attributes(path)):
        value = attrs.get("pixelResolution", attrs.get("resolution"))
        if isinstance(value, dict):
            unit, value = value.get("unit"), value.get("dimensions")
        if isinstance(value, list) and len(value) == store.rank:
            spacing = tuple(float(v) for v in value[::-1])
            unit = {"µm": "um", "micrometer": "um", "nanometer": "nm"}.get(unit, unit)
            break
        unit = None
    return store.T, key, spacing, unit


class N5Reader(_ContainerReader):
    """One dataset of an N5 container (a folder named ``*.n5``, or holding an N5 ``attributes.json``)
    through ``tensorstore``, ``(X, Y, Z)`` reversed to ``(Z, Y, X)``; dataset rules as :class:`HDF5Reader`
    (``"c.n5::volumes/raw"``); a multiscale group (``s0``, ``s1``, ...) reads ``s0``. Spacing: see :func:`open_n5`.

    Example:
        >>> import numpy as np, tempfile, tensorstore as ts
        >>> path = tempfile.mkdtemp() + "/c.n5"
        >>> spec = {"driver": "n5", "kvstore": {"driver": "file", "path": path + "/raw"}, "create": True,
        ...         "metadata": {"dimensions": [4, 3, 2], "blockSize": [4, 3, 1], "dataType": "uint8", "compression": {"type": "gzip"}}}
        >>> ts.open(spec).result().T.write(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)).result()
        >>> N5Reader().load(path)[0][1, 2].tolist()
        [20, 21, 22, 23]
    """

    suffixes = N5_SUFFIXES
    format_name = "N5"

    def _accepts(self, name: str) -> bool:
        path = _split_dataset(name)[0]
        if super()._accepts(name):
            return True
        try:
            return os.path.isdir(path) and "n5" in _n5_attributes(path)
        except (OSError, ValueError):
            return False

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        path, wanted = _split_dataset(str(name))
        if not os.path.exists(path):
            raise _missing(path)
        array, key, spacing, unit = open_n5(path, wanted or self.dataset)
        try:
            data = np.asarray(array.read().result())
        except Exception as exc:
            raise _corrupt(path, "N5", exc) from exc
        return data, _make_meta(path, data, spacing=spacing, spacing_unit=unit, format="N5", dataset=key or None)


class NiftiZYXReader(_EMReader):
    """NIfTI through ``nibabel``, transposed to this package's axis order.

    NIfTI stores ``(X, Y, Z[, T])``; the array is fully reversed to ``([T,] Z, Y, X)``
    (``(Y, X)`` for 2D), and ``spacing`` (from the header zooms) is reversed the same way.
    ``affine`` is the spacing diagonal in that order; the file's own world affine, for the
    original ``(X, Y, Z)`` index order, is kept as ``meta["nifti_affine"]``. Scaling
    (``scl_slope``/``scl_inter``) is applied as nibabel does.

    Example:
        >>> import nibabel as nib, numpy as np, tempfile
        >>> path = tempfile.mkdtemp() + "/v.nii.gz"
        >>> nib.save(nib.Nifti1Image(np.zeros((5, 4, 3), np.uint8), np.eye(4)), path)  # X=5, Y=4, Z=3
        >>> NiftiZYXReader().load(path)[0].shape
        (3, 4, 5)
    """

    suffixes = NIFTI_SUFFIXES
    format_name = "NIfTI"

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        path = str(name)
        _check_file(path, "NIfTI")
        try:
            img = nib.load(path)
            xyz = np.asanyarray(img.dataobj)
            zooms = img.header.get_zooms()[: xyz.ndim]
            unit = img.header.get_xyzt_units()[0] if hasattr(img.header, "get_xyzt_units") else None
        except Exception as exc:
            raise _corrupt(path, "NIfTI", exc) from exc
        array = np.ascontiguousarray(xyz.T)
        spacing = [float(z) for z in reversed(zooms)] if len(zooms) == xyz.ndim else None
        unit = None if unit in (None, "unknown") else unit
        meta = _make_meta(
            path, array, spacing=spacing, spacing_unit=unit, format="NIFTI", nifti_affine=np.asarray(img.affine)
        )
        return array, meta


class ITKVolumeReader(_EMReader):
    """NRRD and MetaImage volumes through MONAI's ``ITKReader`` (``itk-io``), in ``(Z, Y, X)`` order.

    ITK indexes ``(X, Y, Z)``; with ``reverse_indexing`` MONAI hands the array as ``(Z, Y, X)``
    but keeps ITK's spacing order, so the spacing is reversed here. ITK images carry no unit
    (medical files mean mm, microscopy files often um): ``spacing_unit`` is left unset.

    Example:
        >>> import itk, numpy as np, tempfile
        >>> img = itk.image_from_array(np.zeros((3, 4, 5), np.uint16)); img.SetSpacing([0.1, 0.1, 0.5])
        >>> path = tempfile.mkdtemp() + "/v.nrrd"; itk.imwrite(img, path)
        >>> arr, meta = ITKVolumeReader().load(path)
        >>> arr.shape, meta["spacing"].tolist()
        ((3, 4, 5), [0.5, 0.1, 0.1])
    """

    suffixes = ITK_SUFFIXES
    format_name = "NRRD/MetaImage"

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        path = str(name)
        _check_file(path, self.format_name)
        try:
            reader = ITKReader(reverse_indexing=True, affine_lps_to_ras=False)
            image = reader.read(path)
            view, itk_meta = reader.get_data(image)
            array = np.array(view, copy=True)  # a view into the ITK image's buffer: copy while it lives
            del image, view
        except Exception as exc:
            raise _corrupt(path, self.format_name, exc) from exc
        channel_last = not np.isnan(float(itk_meta.get("original_channel_dim", float("nan"))))
        ndim = array.ndim - int(channel_last)
        spacing = np.asarray(itk_meta.get("spacing", [1.0] * ndim), dtype=np.float64)[:ndim][::-1]
        has_spacing = not np.allclose(spacing, 1.0)  # ITK writes 1 where a file states none
        fmt = "NRRD" if path.lower().endswith((".nrrd", ".nhdr")) else "MetaImage"
        meta = _make_meta(path, array, channel_last=channel_last, spacing=spacing.tolist() if has_spacing else None, format=fmt)
        return array, meta


class MRCReader(_EMReader):
    """MRC / IMOD files (tomograms, FIB-SEM stacks) through ``mrcfile``, in ``(Z, Y, X)`` order.

    ``mrcfile`` already gives ``(Z, Y, X)`` (``(Y, X)`` for one section). The header's voxel
    size (angstrom, per X, Y, Z) becomes ``spacing`` in nm in ``(Z, Y, X)`` order; a voxel size
    of 0 means the file states none. Files that break the MRC2014 standard are refused by name.

    Example:
        >>> import mrcfile, numpy as np, tempfile
        >>> path = tempfile.mkdtemp() + "/v.mrc"
        >>> with mrcfile.new(path) as m:
        ...     m.set_data(np.zeros((3, 4, 5), np.int16)); m.voxel_size = (40.0, 40.0, 80.0)
        >>> arr, meta = MRCReader().load(path)
        >>> arr.shape, meta["spacing"].tolist(), meta["spacing_unit"]
        ((3, 4, 5), [8.0, 4.0, 4.0], 'nm')
    """

    suffixes = MRC_SUFFIXES
    format_name = "MRC"

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        path = str(name)
        _check_file(path, "MRC")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # mrcfile warns, then reads garbage, on a damaged header
                with mrcfile.open(path, mode="r", permissive=False) as mrc:
                    array = np.array(mrc.data)
                    voxel = mrc.voxel_size
                    xyz = [float(voxel.x), float(voxel.y), float(voxel.z)]
        except Exception as exc:
            raise _corrupt(path, "MRC", exc) from exc
        ndim = array.ndim
        zyx_nm = [v / 10.0 for v in reversed(xyz)][-ndim:] if ndim <= 3 else None
        has_spacing = zyx_nm is not None and all(v > 0 for v in zyx_nm)
        meta = _make_meta(path, array, spacing=zyx_nm if has_spacing else None, spacing_unit="nm" if has_spacing else None, format="MRC")
        return array, meta


def slice_files(folder: str | os.PathLike) -> tuple[list[Path], Any]:
    """The 2D slices of ``folder`` in natural order and the reader for their format (TIFF or PIL).

    Raises:
        ImageReadError: a folder that mixes slice formats (names it).
    """
    files = list_images(folder, SLICE_SUFFIXES)
    kinds = {"tif" if f.suffix.lower() in TIFF_SUFFIXES else f.suffix.lower() for f in files}
    if len(kinds) > 1:
        raise ImageReadError(f"{folder}: mixes slice formats {sorted(kinds)}; keep one format per folder")
    return files, (TiffVolumeReader() if kinds == {"tif"} else GreyPILReader())


class SliceFolderReader(_EMReader):
    """A folder of 2D slices (PNG/JPEG/BMP/GIF or single-page TIFF) stacked to ``(Z, Y, X)``.

    Slices are sorted naturally by file name (``2.png`` before ``10.png``), hidden files and
    other suffixes are skipped, and each slice is read like a lone file (grey-looking colour
    collapses to grey). All slices must share one format, shape and dtype, else
    ImageReadError names the first offending file. A folder that is a Zarr store is left
    to :class:`ZarrReader`. No spacing: slices do not state their Z spacing.

    Example:
        >>> import numpy as np, tempfile
        >>> from PIL import Image
        >>> folder = tempfile.mkdtemp()
        >>> for z in (0, 1, 2):
        ...     Image.fromarray(np.full((4, 5), z, np.uint8)).save(f"{folder}/{z}.png")
        >>> SliceFolderReader().load(folder)[0][:, 0, 0].tolist()
        [0, 1, 2]
    """

    suffixes = ()
    format_name = "slice folder"

    def _accepts(self, name: str) -> bool:
        if os.path.isdir(name):  # folders without slices are left to others (MONAI reads DICOM folders)
            return not ZarrReader()._accepts(name) and not N5Reader()._accepts(name) and any(
                e.is_file() and not e.name.startswith(".") and _has_suffix(e.name, SLICE_SUFFIXES)
                for e in os.scandir(name)
            )
        # a missing path without suffix is most likely a folder: report it as missing here
        return not os.path.exists(name) and Path(name).suffix == "" and "::" not in name

    def load(self, name: str | os.PathLike) -> tuple[np.ndarray, dict]:
        folder = str(name)
        if not os.path.exists(folder):
            raise _missing(folder)
        files, reader = slice_files(folder)
        first, first_meta = reader.load(files[0])
        if first.ndim != 2 + (first_meta["original_channel_dim"] == -1):
            raise ImageReadError(f"{files[0]}: is not a 2D slice (shape {first.shape})")
        stack = np.empty((len(files),) + first.shape, dtype=first.dtype)
        stack[0] = first
        for z, file in enumerate(files[1:], start=1):
            array = reader.load(file)[0]
            if array.shape != first.shape or array.dtype != first.dtype:
                raise ImageReadError(
                    f"{file}: slice shape {array.shape} dtype {array.dtype} differs from "
                    f"{files[0].name}: shape {first.shape} dtype {first.dtype}"
                )
            stack[z] = array
        channel_last = first_meta["original_channel_dim"] == -1
        return stack, _make_meta(folder, stack, channel_last=channel_last, format="SLICES", first_slice=files[0].name)


def em_readers(dataset: str | None = None) -> list[ImageReader]:
    """Fresh instances of every reader, ordered for MONAI's ``LoadImage``/``LoadImaged``.

    MONAI tries user readers last-to-first (and only then its defaults). Every reader here
    refuses paths of other formats, so the order only decides who is asked first: the most
    common 2D formats. ``dataset`` is passed to the HDF5, Zarr and N5 readers.

    Args:
        dataset: default dataset inside HDF5/Zarr containers (a ``::name`` path suffix wins).

    Returns:
        ``[SliceFolderReader, MRCReader, ITKVolumeReader, NiftiZYXReader, N5Reader, ZarrReader, HDF5Reader, TiffVolumeReader,
        GreyPILReader]``.

    Example:
        >>> from monai.transforms import LoadImage, LoadImaged
        >>> loader = LoadImage(reader=em_readers(), image_only=True, ensure_channel_first=True)
        >>> loader_d = LoadImaged(keys=["image", "label"], reader=em_readers())
    """
    return [
        SliceFolderReader(),
        MRCReader(),
        ITKVolumeReader(),
        NiftiZYXReader(),
        N5Reader(dataset),
        ZarrReader(dataset),
        HDF5Reader(dataset),
        TiffVolumeReader(),
        GreyPILReader(),
    ]


def load_image(path: str | os.PathLike, dataset: str | None = None) -> tuple[np.ndarray, dict]:
    """Read any supported file or slice folder as a numpy array in ``([Z,] Y, X[, C])`` order.

    Args:
        path: image file, TIFF stack, HDF5 file (``"f.h5::raw"`` allowed), Zarr store,
            NIfTI file or folder of 2D slices.
        dataset: array inside an HDF5/Zarr container (when the path names none).

    Returns:
        ``(array, meta)`` with the file's dtype; ``meta`` is the dict MONAI gets.

    Raises:
        FileNotFoundError: the path does not exist.
        ImageReadError: empty, corrupt or ambiguous file (a ValueError naming the file).
        ValueError: unsupported suffix, or ``dataset`` given for a format without datasets.

    Example:
        >>> import numpy as np, tempfile
        >>> from PIL import Image
        >>> path = tempfile.mkdtemp() + "/a.png"
        >>> Image.fromarray(np.zeros((2, 3), np.uint8)).save(path)
        >>> load_image(path)[0].shape
        (2, 3)
    """
    name = str(path)
    for reader in em_readers(dataset)[::-1]:
        if reader.verify_suffix(name):
            if dataset is not None and not isinstance(reader, _ContainerReader):
                raise ValueError(f"{name}: dataset={dataset!r} applies to HDF5, Zarr and N5 only")
            return reader.load(name)
    if os.path.isdir(name):
        return SliceFolderReader().load(name)  # raises: a folder with no slices
    if not os.path.exists(_split_dataset(name)[0]):
        raise _missing(name)
    raise ValueError(
        f"{name}: unsupported file type; supported suffixes: {' '.join(SUPPORTED_SUFFIXES)}, "
        "or a folder of 2D slices"
    )


def list_images(folder: str | os.PathLike, suffixes: Sequence[str] = FILE_SUFFIXES) -> list[Path]:
    """Image files directly inside ``folder``, in natural order, hidden files skipped.

    Args:
        folder: the folder to list (not recursive).
        suffixes: accepted suffixes, case-insensitive (default: every file format read here).

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        NotADirectoryError: ``folder`` is a file.
        ValueError: no image with those suffixes in ``folder``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for n in ("10.png", "2.png", ".hidden.png", "notes.txt"):
        ...     _ = (folder / n).write_bytes(b"")
        >>> [p.name for p in list_images(folder)]
        ['2.png', '10.png']
    """
    root = Path(folder)
    if not root.exists():
        raise _missing(root)
    if not root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(root))
    wanted = tuple(s.lower() if s.startswith(".") else f".{s.lower()}" for s in suffixes)
    files = [p for p in root.iterdir() if not p.name.startswith(".") and p.is_file() and _has_suffix(p.name, wanted)]
    if not files:
        raise ValueError(f"{root}: no image files with suffixes {' '.join(wanted)}")
    return sorted(files, key=natural_key)
