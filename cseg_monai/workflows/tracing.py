"""``cseg trace``: link per-section 2D label images into 3D ids, file by file.

For users who already have 2D segmentations of serial sections (any tool, ids that need not
agree between sections): each input stack ``(Z, Y, X)`` is traced with
:func:`~cseg_monai.postprocessing.section_tracking.trace_sections` (or, with
``method="greedy"``, Cellpose's IoU stitching) and written as ``OUT/STEM_labels.tif`` (uint32
3D ids; an ImageJ uint16 stack with the input's voxel size when it had one and the ids fit) and ``OUT/STEM_tracks.csv`` (one row per traced
profile), both atomically. A folder of stacks runs file by file; a file that fails is reported
in ``OUT/run_summary.json`` and skipped.

Example:
    >>> import tempfile, tifffile
    >>> src, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> stack = np.zeros((3, 16, 16), np.uint16); stack[:, 4:9, 4:9] = [[[1]], [[7]], [[2]]]
    >>> tifffile.imwrite(f"{src}/cells.tif", stack, photometric="minisblack")
    >>> summary = trace_files(f"{src}/cells.tif", out, progress=False)
    >>> summary["succeeded"][0]["objects"], tifffile.imread(f"{out}/cells_labels.tif")[:, 5, 5].tolist()
    (1, [1, 1, 1])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cseg_monai.common.checks import check_instance_ids
from cseg_monai.data.readers import list_images, load_image
from cseg_monai.data.writers import atomic_path, output_stem
from cseg_monai.postprocessing.section_tracking import LinkParams, read_anchors, stitch_greedy, trace_sections, write_tracks
from cseg_monai.workflows.folder_run import FileReport

__all__ = ["TRACE_METHODS", "load_profiles", "trace_files"]

logger = logging.getLogger(__name__)

#: ``hungarian``: :func:`trace_sections`; ``greedy``: Cellpose's stitching (no tracks' costs, no anchors).
TRACE_METHODS = ("hungarian", "greedy")


def load_profiles(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """A ``(Z, Y, X)`` stack of per-section labels and its voxel size (None when the file states none)."""
    return _load(path)[:2]


def _load(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...] | None, str | None]:
    """The stack, its voxel size and its unit.

    Raises:
        ValueError: not 3D, not integer labels (float files must hold whole numbers), negative ids; naming the file.
    """
    array, meta = load_image(path)
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise ValueError(f"{path}: a stack of section label images must be (Z, Y, X), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{path}: label images must hold whole numbers, got {arr.dtype} values that are not")
        arr = arr.astype(np.int64)
    check_instance_ids(arr, str(path))  # negative ids
    if arr.dtype == np.uint64 and arr.size and arr.max() >= 1 << 63:
        raise ValueError(f"{path}: ids reach {arr.max()}, beyond what int64 holds")
    spacing = meta.get("spacing")
    if spacing is not None:
        spacing = tuple(float(s) for s in np.asarray(spacing).reshape(-1))
        spacing = spacing if len(spacing) == 3 and all(s > 0 for s in spacing) else None
    unit = meta.get("spacing_unit")
    return arr.astype(np.int64, copy=False), spacing, (str(unit) if unit else None)


def _inputs(path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    if not p.exists() and "::" not in str(path):
        raise FileNotFoundError(f"input {p} does not exist")
    if p.is_dir() and not p.name.lower().endswith((".zarr", ".n5")):
        files = list_images(p)
        if not files:
            raise ValueError(f"{p}: holds no label stacks")
        return files
    return [Path(str(path))]


def trace_files(
    profiles: str | os.PathLike,
    out_dir: str | os.PathLike,
    anchors: str | os.PathLike | None = None,
    method: str = "hungarian",
    params: LinkParams | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Trace every stack of ``profiles`` (a file or a folder of them) into ``out_dir``.

    Args:
        profiles: a ``(Z, Y, X)`` label stack (TIFF, HDF5 ``FILE.h5::dataset``, zarr, NIfTI, ...) or a folder of them.
        out_dir: output folder (created).
        anchors: a CSV of ``section, y, x, id`` anchor seeds (one input only).
        method: one of :data:`TRACE_METHODS`.
        params: the linking settings.
        progress: a bar over the files.

    Returns:
        The run summary (``objects``, ``sections``, ``labels`` and ``tracks`` paths per file).

    Raises:
        ValueError: an unknown method, anchors for a folder or with the greedy method.
        FolderRunError: after all files were tried, naming each one that failed.
    """
    if method not in TRACE_METHODS:
        raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}")
    files = _inputs(profiles)
    anchor_rows: Sequence[tuple[int, float, float, int]] = []
    if anchors is not None:
        if method == "greedy":
            raise ValueError("anchors need method 'hungarian' (greedy stitching has no constraints)")
        if len(files) > 1:
            raise ValueError(f"anchors apply to one stack; {profiles} holds {len(files)}")
        anchor_rows = read_anchors(anchors)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = FileReport(out, total=len(files), progress=progress, desc="stacks")
    for path in files:
        with report.item(path) as record:
            stack, spacing, unit = _load(path)
            if method == "greedy":
                ids, tracks = stitch_greedy(stack), None
            else:
                ids, tracks = trace_sections(stack, spacing, params, anchor_rows)
            stem = output_stem(path)
            labels_path = out / f"{stem}_labels.tif"
            with atomic_path(labels_path) as tmp:
                if spacing is not None and ids.max(initial=0) < 1 << 16:  # ImageJ stacks hold no uint32: its spacing only up to 65535 ids
                    metadata = {"spacing": spacing[0], "axes": "ZYX"} | ({"unit": unit} if unit else {})  # the input's unit, when it states one
                    tifffile.imwrite(tmp, ids.astype(np.uint16), imagej=True, resolution=(1 / spacing[2], 1 / spacing[1]), metadata=metadata)
                else:
                    tifffile.imwrite(tmp, ids, photometric="minisblack", compression="zlib")
            record.update(objects=int(len(np.unique(ids[ids > 0]))), sections=int(stack.shape[0]), labels=str(labels_path))
            if tracks is not None:
                record["tracks"] = str(write_tracks(out / f"{stem}_tracks.csv", tracks))
            logger.info("%s: %d objects over %d sections -> %s", path, record["objects"], stack.shape[0], labels_path)
    return report.finish()
