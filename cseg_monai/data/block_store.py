"""An OME-Zarr output written block by block, resumable, that never destroys a finished output.

Layout (OME-Zarr 0.4, zarr format 2, as napari, Fiji/BigDataViewer and neuroglancer read it)::

    OUT.ome.zarr/                 image group: multiscales, axes c, z, y, x with the voxel size
        0/                        probabilities (C, Z, Y, X): uint8 (value / 255), float16 or float32
        labels/segmentation/0/    labels (Z, Y, X), an OME-Zarr label image

A run writes into ``OUT.ome.zarr.partial`` and renames it to ``OUT.ome.zarr`` when every block
is done; a finished block leaves a marker file, so a run that was interrupted and restarted
with the same arguments skips what is done. The arguments' fingerprint is stored in the
attributes: a restart with other arguments is refused (``overwrite=True`` starts afresh, and an
existing finished output is only replaced once the new one is complete).

Blocks must align with the chunks (every block core a union of whole chunks), so workers
writing different blocks never write the same chunk.

Example:
    >>> import tempfile, numpy as np
    >>> out = tempfile.mkdtemp() + "/v.ome.zarr"
    >>> store = BlockStore.create(out, (1, 4, 8, 8), chunks=(2, 8, 8), spacing=(1.0, 0.5, 0.5), arguments={"a": 1})
    >>> store.write(((0, 2), (0, 8), (0, 8)), np.full((1, 2, 8, 8), 0.5, np.float32), np.ones((2, 8, 8), np.uint8))
    >>> store.mark_done("0_0_0"); store.is_done("0_0_0"), store.is_done("1_0_0")
    (True, False)
    >>> final = store.finish()
    >>> import zarr; float(zarr.open_array(final + "/0")[0, 0, 0, 0]) / 255
    0.5019607843137255
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import Blosc

__all__ = ["BlockStore", "OutputExistsError", "PROB_DTYPES", "fingerprint"]

#: Probability encodings: stored dtype and the factor that turns a stored value into a probability.
PROB_DTYPES = {"uint8": ("u1", 1.0 / 255.0), "float16": ("f2", 1.0), "float32": ("f4", 1.0)}
_DONE = ".cseg_blocks_done"
_WORK = ".cseg_work"
_ATTR = "cseg_inference"


class OutputExistsError(FileExistsError):
    """The output exists, written with other arguments; pass ``overwrite=True`` to replace it."""


def fingerprint(arguments: dict[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the JSON of ``arguments`` with sorted keys.

    Example:
        >>> fingerprint({"b": 1, "a": [2]}) == fingerprint({"a": [2], "b": 1})
        True
    """
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _ome_multiscales(name: str, axes: Sequence[str], scale: Sequence[float], unit: str | None) -> list[dict[str, Any]]:
    units = {"um": "micrometer", "nm": "nanometer", "micron": "micrometer", "µm": "micrometer"}
    out_axes = []
    for a in axes:
        entry: dict[str, Any] = {"name": a, "type": "channel" if a == "c" else "space"}
        if a != "c" and unit in units:
            entry["unit"] = units[unit]
        out_axes.append(entry)
    return [
        {
            "version": "0.4",
            "name": name,
            "axes": out_axes,
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [float(s) for s in scale]}]}],
        }
    ]


class BlockStore:
    """The output of one out-of-core run (see the module docstring). Make one with :meth:`create`.

    Attributes:
        final: the finished store's path (``...ome.zarr``).
        path: where blocks are written now (``final + ".partial"``, or ``final`` when it is complete).
        complete: the store is finished (a rerun with the same arguments has nothing to do).
    """

    def __init__(self, final: str, path: str, complete: bool) -> None:
        self.final, self.path, self.complete = final, path, complete
        self._arrays: tuple[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"final": self.final, "path": self.path, "complete": self.complete, "_arrays": None}

    @classmethod
    def create(
        cls,
        final: str | os.PathLike,
        prob_shape: Sequence[int],
        chunks: Sequence[int],
        prob_dtype: str = "uint8",
        labels_dtype: str | None = "uint8",
        spacing: Sequence[float] | None = None,
        spacing_unit: str | None = None,
        arguments: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> BlockStore:
        """Open the run's store: resume a partial one with the same arguments, or start a new one.

        Args:
            final: the finished output's path (conventionally ``NAME.ome.zarr``).
            prob_shape: ``(C, [Z,] Y, X)`` of the probabilities.
            chunks: the spatial chunk shape (one entry per spatial axis); blocks are unions of chunks.
            prob_dtype: ``"uint8"`` (probability x 255, rounded), ``"float16"`` or ``"float32"``.
            labels_dtype: numpy dtype name of the label image, or ``None`` for no labels.
            spacing: voxel size per spatial axis (1.0 each when unknown), written to the OME metadata.
            spacing_unit: ``"um"`` or ``"nm"`` when known.
            arguments: what decides the result (input, weights, settings); their fingerprint guards resuming.
            overwrite: replace a store written with other arguments (a finished one only at the end).

        Raises:
            OutputExistsError: a store (finished or partial) written with other arguments, and not ``overwrite``.
            ValueError: bad shapes or dtypes.
        """
        final = str(final).rstrip("/")
        prob_shape = tuple(int(s) for s in prob_shape)
        chunks = tuple(int(c) for c in chunks)
        spatial = prob_shape[1:]
        if len(chunks) != len(spatial) or len(spatial) not in (2, 3) or min(chunks) < 1 or min(prob_shape) < 1:
            raise ValueError(f"chunks {chunks} must be positive, one per spatial axis of {prob_shape} (C, [Z,] Y, X)")
        if prob_dtype not in PROB_DTYPES:
            raise ValueError(f"prob_dtype must be one of {list(PROB_DTYPES)}, got {prob_dtype!r}")
        arguments = dict(arguments or {})
        settings = {"prob_shape": prob_shape, "chunks": chunks, "prob_dtype": prob_dtype, "labels_dtype": labels_dtype}
        key = fingerprint({"arguments": arguments, "settings": settings})
        partial = final + ".partial"
        if cls._fingerprint_of(partial) == key and cls._is_complete(partial):
            cls._promote(partial, final)  # a run that stopped inside finish(): nothing left but the rename
        existing = cls._fingerprint_of(final)
        if existing is not None and existing == key and cls._is_complete(final):
            for leftover in (_DONE, _WORK):  # a crash after the rename left them
                shutil.rmtree(os.path.join(final, leftover), ignore_errors=True)
            return cls(final, final, complete=True)
        if existing is not None and existing != key and not overwrite:
            raise OutputExistsError(
                f"{final} exists, written with other arguments (fingerprint {existing}, now {key}); "
                "pass overwrite=True (--overwrite true) to replace it, or choose another output folder"
            )
        if os.path.exists(final) and existing is None and not overwrite:
            raise OutputExistsError(f"{final} exists and is not an output of this tool; move it away or pass overwrite=True")
        old_partial = cls._fingerprint_of(partial)
        if old_partial == key:
            return cls(final, partial, complete=False)  # resume
        if os.path.exists(partial):
            if not overwrite and old_partial is not None:
                raise OutputExistsError(
                    f"{partial}: an unfinished run with other arguments (fingerprint {old_partial}, now {key}); "
                    "pass overwrite=True to start afresh"
                )
            shutil.rmtree(partial)
        spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * len(spatial)
        axes = ["c", "z", "y", "x"][-(len(spatial) + 1) :] if len(spatial) == 3 else ["c", "y", "x"]
        root = zarr.open_group(partial, mode="w", zarr_format=2)
        compressor = Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)
        root.create_array("0", shape=prob_shape, chunks=(1,) + chunks, dtype=PROB_DTYPES[prob_dtype][0], compressor=compressor, fill_value=0)
        attrs: dict[str, Any] = {
            "multiscales": _ome_multiscales("probabilities", axes, (1.0,) + spacing, spacing_unit),
            _ATTR: {"fingerprint": key, "arguments": arguments, "settings": settings, "prob_scale": PROB_DTYPES[prob_dtype][1], "complete": False},
        }
        if labels_dtype is not None:
            labels = root.create_group("labels")
            labels.attrs["labels"] = ["segmentation"]
            seg = labels.create_group("segmentation")
            seg.create_array("0", shape=spatial, chunks=chunks, dtype=np.dtype(labels_dtype).str[1:], compressor=compressor, fill_value=0)
            seg.attrs.update(
                {
                    "multiscales": _ome_multiscales("segmentation", axes[1:], spacing, spacing_unit),
                    "image-label": {"version": "0.4", "source": {"image": "../../"}},
                }
            )
        root.attrs.update(attrs)
        os.makedirs(os.path.join(partial, _DONE), exist_ok=True)
        return cls(final, partial, complete=False)

    @staticmethod
    def _attrs(path: str) -> dict[str, Any] | None:
        meta = os.path.join(path, ".zattrs")
        if not os.path.isfile(meta):
            return None
        try:
            return json.loads(Path(meta).read_text()).get(_ATTR)
        except (OSError, ValueError):
            return None

    @classmethod
    def _fingerprint_of(cls, path: str) -> str | None:
        attrs = cls._attrs(path)
        return None if attrs is None else attrs.get("fingerprint")

    @classmethod
    def _is_complete(cls, path: str) -> bool:
        attrs = cls._attrs(path)
        return bool(attrs and attrs.get("complete"))

    @property
    def prob_scale(self) -> float:
        """Stored probability value x ``prob_scale`` = probability."""
        return float(self._attrs(self.path)["prob_scale"])

    def _open(self) -> tuple[Any, Any]:
        if self._arrays is None:
            root = zarr.open_group(self.path, mode="r+", zarr_format=2)
            labels = root["labels/segmentation/0"] if "labels" in root else None
            self._arrays = (root["0"], labels)
        return self._arrays

    def write(self, core: Sequence[tuple[int, int]], prob: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Write one block: ``prob`` ``(C, *core)`` in [0, 1] (encoded to the store's dtype), ``labels`` ``core``."""
        probs, seg = self._open()
        box = tuple(slice(a, b) for a, b in core)
        if probs.dtype == np.uint8:
            prob = np.rint(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)
        probs[(slice(None),) + box] = np.asarray(prob, dtype=probs.dtype)
        if seg is not None and labels is not None:
            seg[box] = np.asarray(labels, dtype=seg.dtype)

    def write_labels(self, core: Sequence[tuple[int, int]], labels: np.ndarray) -> None:
        """Write the labels of one block alone (a later pass than its probabilities).

        Raises:
            ValueError: the store has no label image.
        """
        _, seg = self._open()
        if seg is None:
            raise ValueError(f"{self.path} has no label image")
        seg[tuple(slice(a, b) for a, b in core)] = np.asarray(labels, dtype=seg.dtype)

    def _marker(self, block_id: str, stage: str = "") -> str:
        return os.path.join(self.path, _DONE, stage, block_id) if stage else os.path.join(self.path, _DONE, block_id)

    def is_done(self, block_id: str, stage: str = "") -> bool:
        """Whether the block (of ``stage``, for a run in several passes) was written by this run or the interrupted one it resumes."""
        return self.complete or os.path.exists(self._marker(block_id, stage))

    def mark_done(self, block_id: str, stage: str = "") -> None:
        """Record a written block (after :meth:`write` returned, or a work array's block of ``stage``)."""
        marker = self._marker(block_id, stage)
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        tmp = marker + ".tmp"
        Path(tmp).write_text("")
        os.replace(tmp, marker)

    def done_blocks(self, stage: str = "") -> set[str]:
        """Ids of the blocks (of ``stage``) already written."""
        folder = os.path.join(self.path, _DONE, stage) if stage else os.path.join(self.path, _DONE)
        if not os.path.isdir(folder):
            return set()
        return {n for n in os.listdir(folder) if not n.endswith(".tmp") and os.path.isfile(os.path.join(folder, n))}

    # -- intermediate results of a run in several passes (deleted by finish) ----------------
    def work_path(self, name: str) -> str:
        """Where the intermediate ``name`` lives (inside the unfinished store)."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"work name {name!r} must be a plain file name")
        return os.path.join(self.path, _WORK, name)

    def work_array(self, name: str, shape: Sequence[int], chunks: Sequence[int], dtype: str) -> Any:
        """A zarr array for intermediate results: created on first use, reopened when the run resumes.

        Raises:
            ValueError: an existing one of another shape, chunks or dtype (a corrupt store).
        """
        path = self.work_path(name)
        shape, chunks = tuple(int(s) for s in shape), tuple(int(c) for c in chunks)
        if os.path.exists(os.path.join(path, ".zarray")):
            arr = zarr.open_array(path, mode="r+", zarr_format=2)
            if arr.shape != shape or arr.chunks != chunks or arr.dtype != np.dtype(dtype):
                raise ValueError(f"{path}: holds {arr.shape} {arr.dtype} in chunks {arr.chunks}, this run needs {shape} {dtype} in {chunks}")
            return arr
        os.makedirs(os.path.dirname(path), exist_ok=True)
        compressor = Blosc(cname="zstd", clevel=1, shuffle=Blosc.BITSHUFFLE)
        return zarr.create_array(path, shape=shape, chunks=chunks, dtype=dtype, compressors=compressor, fill_value=0, zarr_format=2)

    def save_table(self, name: str, **arrays: np.ndarray) -> None:
        """Save arrays as ``name.npz`` among the intermediates (written to a temporary name and renamed)."""
        path = self.work_path(name + ".npz")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)

    def load_table(self, name: str, keys: Sequence[str] | None = None) -> dict[str, np.ndarray] | None:
        """The arrays :meth:`save_table` saved (only ``keys`` when given), or ``None`` when there are none yet."""
        path = self.work_path(name + ".npz")
        if not os.path.isfile(path):
            return None
        with np.load(path) as data:
            return {k: data[k] for k in (data.files if keys is None else keys)}

    def save_results(self, **values: Any) -> None:
        """Record JSON-able results of the run (e.g. an object count) in the store's metadata, so that
        a rerun that finds the store complete reports them too (:attr:`results`)."""
        root = zarr.open_group(self.path, mode="r+", zarr_format=2)
        info = dict(root.attrs[_ATTR])
        root.attrs[_ATTR] = {**info, "results": {**info.get("results", {}), **values}}

    @property
    def results(self) -> dict[str, Any]:
        """What :meth:`save_results` recorded (empty when nothing).

        Example:
            >>> import tempfile
            >>> store = BlockStore.create(tempfile.mkdtemp() + "/v.ome.zarr", (1, 4, 4), chunks=(4, 4))
            >>> store.save_results(instances=3); store.results
            {'instances': 3}
        """
        return dict((self._attrs(self.path) or {}).get("results", {}))

    @staticmethod
    def _promote(partial: str, final: str) -> None:
        """Rename a complete partial store to ``final`` (an old output goes only now), then drop the run's bookkeeping.

        Every step can be repeated: a crash in between leaves either a complete partial store
        (:meth:`create` promotes it) or a complete final one with leftovers (removed on reuse).
        """
        if os.path.exists(partial):
            old = None
            if os.path.exists(final):
                old = final + ".old"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
            os.replace(partial, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(os.path.join(final, _DONE), ignore_errors=True)
        shutil.rmtree(os.path.join(final, _WORK), ignore_errors=True)

    def finish(self) -> str:
        """Mark the store complete and move it to its final name (replacing an old output only now).

        Returns:
            The final path.
        """
        if self.complete:
            return self.final
        root = zarr.open_group(self.path, mode="r+", zarr_format=2)
        info = dict(root.attrs[_ATTR])
        info["complete"] = True
        root.attrs[_ATTR] = info
        self._promote(self.path, self.final)
        self.path, self.complete, self._arrays = self.final, True, None
        return self.final
