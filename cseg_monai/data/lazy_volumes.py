"""Volumes read lazily, box by box: zarr / OME-Zarr, N5, HDF5, multi-page TIFF, folders of slices.

A :class:`LazyVolume` is array-like (``shape``, ``dtype``, ``ndim``, ``volume[z0:z1, y0:y1, x0:x1]``)
and reads only what is asked for: a zarr, N5 or HDF5 box through the container's own chunked reads
(N5 through ``tensorstore``),
a TIFF stack page by page (``tifffile``, only the pages of the box), a folder of 2D slices file by
file. It pickles without its open file handle, so it can be sent to ``dask.distributed`` workers,
each of which opens the file once. :meth:`LazyVolume.to_dask` wraps it as a ``dask.array`` for
reductions over the whole volume (intensity statistics) that never hold it in memory.

The axis convention is the readers' (:mod:`cseg_monai.data.readers`): ``(Z, Y, X)`` or ``(Y, X)``,
grey values only. The voxel size comes from the same places the readers take it from: ImageJ
TIFF metadata, ``element_size_um`` / ``resolution`` attributes of HDF5 and zarr, the
``multiscales`` scale of an OME-Zarr image (level 0), and N5's ``pixelResolution`` / ``resolution``.

Example:
    >>> import numpy as np, tempfile, zarr
    >>> path = tempfile.mkdtemp() + "/v.zarr"
    >>> zarr.open_array(path, mode="w", shape=(4, 30, 20), chunks=(1, 30, 20), dtype="u1")[:] = 3
    >>> vol = open_volume(path)
    >>> vol.shape, vol.dtype, vol[1:3, :2, :2].sum()
    ((4, 30, 20), dtype('uint8'), np.uint64(24))
    >>> vol.to_dask().mean().compute()
    np.float64(3.0)
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import numpy as np
import tifffile
import zarr

from cseg_monai.data.readers import (
    HDF5_SUFFIXES,
    N5_SUFFIXES,
    SLICE_SUFFIXES,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    GreyPILReader,
    ImageReadError,
    N5Reader,
    TiffVolumeReader,
    ZarrReader,
    _ContainerReader,
    _split_dataset,
    list_images,
    open_n5,
)

__all__ = ["LazyVolume", "open_volume", "LAZY_SUFFIXES"]

LAZY_SUFFIXES = ZARR_SUFFIXES + N5_SUFFIXES + HDF5_SUFFIXES + TIFF_SUFFIXES
_KINDS = ("zarr", "n5", "hdf5", "tiff", "slices")


def _ome_level0(group: Any) -> tuple[str, list[float] | None, list[str] | None, str | None] | None:
    """``(path, scale, axis types, unit)`` of an OME-Zarr image group's first level, or None."""
    attrs = dict(group.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        return None
    first = multiscales[0]
    dataset = first["datasets"][0]
    scale = None
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [float(s) for s in t["scale"]]
    axes = first.get("axes")
    types = [a.get("type", "space") if isinstance(a, dict) else ("space" if a in "zyx" else a) for a in axes] if axes else None
    units = {a.get("unit") for a in axes or [] if isinstance(a, dict) and a.get("type") == "space"}
    unit = {"micrometer": "um", "nanometer": "nm"}.get(next(iter(units)), next(iter(units))) if len(units) == 1 else None
    return dataset["path"], scale, types, unit


def _content_stat(path: str) -> tuple[int, int, int]:
    """``(files, total bytes, latest mtime in ns)`` of a file, or of every file under a directory."""
    st = os.stat(path)
    if not os.path.isdir(path):
        return 1, st.st_size, st.st_mtime_ns
    count, size, latest = 0, 0, st.st_mtime_ns
    for root, _dirs, names in os.walk(path):
        for name in names:
            fst = os.stat(os.path.join(root, name))
            count, size, latest = count + 1, size + fst.st_size, max(latest, fst.st_mtime_ns)
    return count, size, latest


class LazyVolume:
    """One grey volume on disk, read a box at a time (see the module docstring).

    Use :func:`open_volume` to make one; the constructor is for its fields.

    Attributes:
        path: the file, store or slice folder.
        kind: ``"zarr"``, ``"n5"``, ``"hdf5"``, ``"tiff"`` or ``"slices"``.
        dataset: the array inside a container (``None`` for a single array, TIFF and slices).
        shape / dtype: of the stored volume, ``(Z, Y, X)`` or ``(Y, X)``.
        spacing: voxel size per axis when the file states it, else ``None``; ``spacing_unit`` its unit.
        chunks: the native read unit (the container's chunks, one page, one slice).
    """

    def __init__(
        self,
        path: str,
        kind: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunks: tuple[int, ...],
        dataset: str | None = None,
        spacing: tuple[float, ...] | None = None,
        spacing_unit: str | None = None,
        squeeze: tuple[int, ...] = (),
        files: tuple[str, ...] = (),
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.path, self.kind, self.dataset = str(path), kind, dataset
        self.shape, self.dtype, self.chunks = tuple(int(s) for s in shape), np.dtype(dtype), tuple(int(c) for c in chunks)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.spacing_unit = spacing_unit
        self.squeeze, self.files = tuple(squeeze), tuple(files)
        self._handle: Any = None
        self._lock = threading.Lock()

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape)))

    def __repr__(self) -> str:
        inner = f"::{self.dataset}" if self.dataset else ""
        return f"LazyVolume({self.path}{inner}, {self.kind}, shape={self.shape}, dtype={self.dtype}, spacing={self.spacing})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def token(self) -> str:
        """A short hash of what identifies the content: path, dataset, shape, dtype, size and mtime of the file(s).

        A directory store (zarr, N5) is walked, only the array's own folder when the volume is a
        dataset inside a container (another array, labels or a pyramid level written beside it
        changes nothing): the count, total size and latest mtime of its files enter the hash, so
        a chunk rewritten in place changes the token (a directory's own mtime changes only when
        entries are added or removed). Walking costs one ``stat`` per chunk file, about a second
        per 100,000 chunks.
        """
        stats = []
        inner = os.path.join(self.path, self.dataset) if self.dataset else None
        for p in self.files or ((inner,) if inner and os.path.isdir(inner) else (self.path,)):
            stats.append(_content_stat(p))
        key = repr((os.path.abspath(self.path), self.dataset, self.shape, str(self.dtype), stats))
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def _open(self) -> Any:
        if self._handle is None:
            if self.kind == "zarr":
                node = zarr.open(store=self.path, mode="r")
                self._handle = node if self.dataset is None else node[self.dataset]
            elif self.kind == "n5":
                self._handle = open_n5(self.path, self.dataset)[0]
            elif self.kind == "hdf5":
                self._handle = h5py.File(self.path, "r")[self.dataset]
            elif self.kind == "tiff":
                self._handle = tifffile.TiffFile(self.path)
        return self._handle

    def _box(self, key: Any) -> tuple[slice, ...]:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim or not all(isinstance(k, slice) and k.step in (None, 1) for k in key):
            raise IndexError(f"{self.path}: a LazyVolume takes one slice of step 1 per axis, got {key!r}")
        return tuple(slice(*k.indices(n)[:2]) for k, n in zip(key, self.shape))

    def __getitem__(self, key: Any) -> np.ndarray:
        box = self._box(key)
        if any(s.stop <= s.start for s in box):
            return np.zeros([max(s.stop - s.start, 0) for s in box], self.dtype)
        try:
            with self._lock:
                return self._read(box)
        except (OSError, KeyError, IndexError, ValueError, RuntimeError) as exc:
            raise ImageReadError(f"{self.path}: cannot read box {[(s.start, s.stop) for s in box]} ({type(exc).__name__}: {exc})") from exc

    def _read(self, box: tuple[slice, ...]) -> np.ndarray:
        if self.kind in ("zarr", "hdf5"):
            full = list(box)
            for axis in self.squeeze:  # length-1 axes the volume hides (OME-Zarr t, c)
                full.insert(axis, slice(0, 1))
            out = np.asarray(self._open()[tuple(full)])
            return out.reshape([s.stop - s.start for s in box])
        if self.kind == "n5":
            return np.asarray(self._open()[box].read().result())
        if self.ndim == 2:
            page = self._page(0)
            return np.ascontiguousarray(page[box])
        return np.stack([self._page(z)[box[1:]] for z in range(box[0].start, box[0].stop)])

    def _page(self, z: int) -> np.ndarray:
        if self.kind == "slices":
            reader = TiffVolumeReader() if Path(self.files[z]).suffix.lower() in TIFF_SUFFIXES else GreyPILReader()
            page = reader.load(self.files[z])[0]
        else:
            page = self._open().asarray(key=z, series=0)
        if page.shape != self.shape[-2:]:
            where = self.files[z] if self.kind == "slices" else f"{self.path} page {z}"
            raise ImageReadError(f"{where}: slice of shape {page.shape}, the volume's slices are {self.shape[-2:]}")
        return page

    def to_dask(self, chunks: tuple[int, ...] | None = None) -> da.Array:
        """The volume as a ``dask.array`` (default chunks: whole native read units, about 64 MB)."""
        if chunks is None:
            unit = max(int(np.prod(self.chunks)) * self.dtype.itemsize, 1)
            lead = max(1, min(self.shape[0], (64 << 20) // unit * self.chunks[0]))
            chunks = (lead,) + self.chunks[1:] if self.kind in ("tiff", "slices") else self.chunks
        return da.from_array(self, chunks=chunks, lock=False, asarray=True, fancy=False, name=f"lazy-volume-{self.token()}")


def _grey(path: str, shape: tuple[int, ...], what: str) -> None:
    if len(shape) not in (2, 3):
        raise ImageReadError(f"{path}: {what} of shape {shape}; out-of-core inference reads grey (Z, Y, X) or (Y, X) volumes")


def _open_container(path: str, dataset: str | None, kind: str) -> LazyVolume:
    if kind == "hdf5":
        if not h5py.is_hdf5(path):
            raise ImageReadError(f"{path}: corrupt or not an HDF5 file")
        with h5py.File(path, "r") as h5:
            available: list[str] = []
            h5.visititems(lambda n, o: available.append(n) if isinstance(o, h5py.Dataset) and o.ndim > 0 and o.dtype.kind in "biuf" else None)
            key = _ContainerReader()._choose(path, dataset, available)
            dset = h5[key]
            shape, dtype = dset.shape, dset.dtype
            chunks = dset.chunks or (1,) * (dset.ndim - 2) + dset.shape[-2:]
            spacing, unit = _ContainerReader._spacing(np.empty((0,) * dset.ndim), dset.attrs, h5.attrs)
        _grey(path, shape, "dataset")
        return LazyVolume(path, "hdf5", shape, dtype, chunks, key, None if spacing is None else tuple(spacing), unit)
    try:
        node = zarr.open(store=path, mode="r")
    except Exception as exc:
        raise ImageReadError(f"{path}: corrupt or not a Zarr store ({type(exc).__name__}: {exc})") from exc
    key, squeeze, spacing, unit = None, (), None, None
    if isinstance(node, zarr.Array):
        if dataset is not None:
            raise ImageReadError(f"{path}: is a single array; no dataset {dataset!r} inside it")
        arr, sources = node, (node.attrs,)
    else:
        group = node[dataset] if dataset is not None and dataset in node and not isinstance(node[dataset], zarr.Array) else node
        ome = _ome_level0(group)
        if ome is not None:
            level, scale, types, unit = ome
            key = f"{dataset}/{level}" if group is not node else level
            arr = node[key]
            types = types or ["space"] * arr.ndim
            squeeze = tuple(i for i, t in enumerate(types) if t != "space")
            if any(arr.shape[i] != 1 for i in squeeze):
                raise ImageReadError(
                    f"{path}: OME-Zarr image of shape {arr.shape} with axes {types}; a non-spatial axis longer than 1 "
                    "(channels or time points): write one channel per image, or name its level with '::'"
                )
            spacing = None if scale is None else tuple(s for i, s in enumerate(scale) if i not in squeeze)
            sources = ()
        else:
            key = ZarrReader()._choose(path, dataset, [n for n, _ in ZarrReader._walk(node)])
            arr, sources = node[key], (node[key].attrs, node.attrs)
    shape = tuple(n for i, n in enumerate(arr.shape) if i not in squeeze)
    chunks = tuple(c for i, c in enumerate(arr.chunks) if i not in squeeze)
    _grey(path, shape, "array")
    if spacing is None and sources:
        found, unit = _ContainerReader._spacing(np.empty((0,) * len(shape)), *sources)
        spacing = None if found is None else tuple(found)
    return LazyVolume(path, "zarr", shape, arr.dtype, chunks, key, spacing, unit, squeeze=squeeze)


def _open_n5(path: str, dataset: str | None) -> LazyVolume:
    array, key, spacing, unit = open_n5(path, dataset)
    shape = tuple(int(n) for n in array.shape)
    _grey(path, shape, "dataset")
    layout = array.chunk_layout.read_chunk.shape
    chunks = tuple(int(c) if c else n for c, n in zip(layout, shape))
    return LazyVolume(path, "n5", shape, array.dtype.numpy_dtype, chunks, key, spacing, unit)


def _open_tiff(path: str) -> LazyVolume:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype, axes = tuple(series.shape), series.dtype, series.axes
            spacing = TiffVolumeReader._imagej_spacing(tif, axes)
            unit = (tif.imagej_metadata or {}).get("unit")
    except Exception as exc:
        raise ImageReadError(f"{path}: corrupt or not a TIFF file ({type(exc).__name__}: {exc})") from exc
    if any(a in "CS" for a in axes):
        raise ImageReadError(f"{path}: axes {axes!r} hold channels; out-of-core inference reads grey stacks (save one channel per file)")
    _grey(path, shape, "image")
    chunks = (1,) * (len(shape) - 2) + shape[-2:]
    return LazyVolume(path, "tiff", shape, dtype, chunks, None, None if spacing is None else tuple(spacing), unit)


def _open_slices(folder: str) -> LazyVolume:
    files = list_images(folder, SLICE_SUFFIXES)
    kinds = {"tif" if f.suffix.lower() in TIFF_SUFFIXES else f.suffix.lower() for f in files}
    if len(kinds) > 1:
        raise ImageReadError(f"{folder}: mixes slice formats {sorted(kinds)}; keep one format per folder")
    reader = TiffVolumeReader() if kinds == {"tif"} else GreyPILReader()
    first, meta = reader.load(files[0])
    if first.ndim != 2:
        raise ImageReadError(f"{files[0]}: is not a grey 2D slice (shape {first.shape})")
    shape = (len(files),) + first.shape
    return LazyVolume(folder, "slices", shape, first.dtype, (1,) + first.shape, files=tuple(str(f) for f in files))


def open_volume(path: str | os.PathLike, dataset: str | None = None) -> LazyVolume:
    """Open a volume for box-wise reading without loading it.

    Args:
        path: a zarr / OME-Zarr store, an N5 container (``"c.n5::volumes/raw"``), an HDF5 file
            (``"f.h5::raw"`` names the dataset), a TIFF
            (one page or a stack), or a folder of 2D slices (PNG or TIFF, natural order).
        dataset: the array inside a zarr, N5 or HDF5 container when the path names none; for an
            OME-Zarr store holding several images, the image group.

    Raises:
        FileNotFoundError: the path does not exist.
        ImageReadError: corrupt, ambiguous, not grey or of other than 2 or 3 axes (names the file).
        ValueError: a format that cannot be read lazily (convert it to zarr first).

    Example:
        >>> import numpy as np, tempfile, tifffile
        >>> path = tempfile.mkdtemp() + "/s.tif"
        >>> tifffile.imwrite(path, np.arange(24, dtype=np.uint16).reshape(2, 3, 4), imagej=True, resolution=(2.0, 2.0),
        ...                  metadata={"spacing": 0.3, "unit": "um", "axes": "ZYX"})
        >>> vol = open_volume(path)
        >>> vol.spacing, vol[1:, 2:, :2].tolist()
        ((0.3, 0.5, 0.5), [[[20, 21]]])
    """
    name, inner = _split_dataset(str(path))
    inner = inner or dataset
    if not os.path.exists(name):
        raise FileNotFoundError(f"input {name} does not exist")
    lower = name.lower().rstrip("/\\")
    if lower.endswith(N5_SUFFIXES) or N5Reader()._accepts(name):
        return _open_n5(name, inner)
    if lower.endswith(ZARR_SUFFIXES) or ZarrReader()._accepts(name):
        return _open_container(name, inner, "zarr")
    if lower.endswith(HDF5_SUFFIXES):
        return _open_container(name, inner, "hdf5")
    if inner is not None:
        raise ValueError(f"{name}: dataset {inner!r} applies to zarr, N5 and HDF5 only")
    if lower.endswith(TIFF_SUFFIXES):
        return _open_tiff(name)
    if os.path.isdir(name):
        return _open_slices(name)
    raise ValueError(
        f"{name}: cannot be read box by box; out-of-core inference reads {' '.join(LAZY_SUFFIXES)} and folders of "
        f"2D slices (convert other formats to zarr, e.g. `cseg` in-memory inference for small files)"
    )
