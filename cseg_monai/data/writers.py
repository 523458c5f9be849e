"""Atomic writers: every output goes to a temporary name in the target folder first and
is renamed into place, so an interrupted run never leaves a half-written file under the
final name and never destroys an existing output before the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

__all__ = ["atomic_path", "output_stem", "write_tiff"]

_MULTI_SUFFIXES = (".nii.gz", ".ome.tiff", ".ome.tif", ".ome.zarr")


def output_stem(path: str | os.PathLike) -> str:
    """The stem used to name outputs: the file name without its (image) suffix.

    Example:
        >>> output_stem("/data/slices/12.png"), output_stem("vol.nii.gz"), output_stem("a.h5::raw")
        ('12', 'vol', 'a')
    """
    name = Path(str(path).split("::")[0]).name
    for suffix in _MULTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if "." in name else name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success.

    Args:
        path: the final file name. Its folder is created when missing.

    Yields:
        A temporary path in the same folder (same file system, so the rename is atomic),
        keeping the suffix so that writers that dispatch on the suffix still work.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("done")
        >>> out.read_text()
        'done'
        >>> umask = os.umask(0); _ = os.umask(umask)
        >>> out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
        True
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=".tmp" + final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp creates 0600 files: give the result the usual umask permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_tiff(path: str | os.PathLike, array: np.ndarray, *, compression: str | None = "zlib") -> Path:
    """Write ``array`` as a (multi-page) TIFF atomically.

    Args:
        path: output file, ``.tif``/``.tiff``.
        array: any numeric array; it is written as is (axis order (C,) (Z,) Y, X).
        compression: tifffile compression, default ``"zlib"`` (lossless); ``None`` for raw.

    Returns:
        The final path.

    Example:
        >>> import tempfile, numpy as np, tifffile, pathlib
        >>> p = write_tiff(pathlib.Path(tempfile.mkdtemp()) / "x.tif", np.zeros((2, 4, 4), np.float32))
        >>> tifffile.imread(p).shape
        (2, 4, 4)
    """
    arr = np.asarray(array)
    if arr.size == 0:
        raise ValueError(f"refusing to write an empty array to {path}")
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"write_tiff writes .tif/.tiff files, got {path}")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, arr, compression=compression, photometric="minisblack")
    return Path(path)
