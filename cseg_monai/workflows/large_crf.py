"""Out-of-core dense CRF: refine class probabilities of a volume larger than memory, block by block.

The input is what out-of-core organelle inference writes (``NAME.ome.zarr``: class scores ``0``
as uint8 x 1/255, float16 or float32, see :mod:`~cseg_monai.data.block_store`) or any zarr array
``(C, Z, Y, X)`` of probabilities, plus the image volume they came from (read lazily). Each block
(aligned with the output's chunks) reads its core plus a halo of 3 x the widest kernel sigma in
voxels of each axis, as :class:`~cseg_monai.postprocessing.DenseCRF` splits a volume in memory,
runs the CRF there, and keeps the core; blocks run on Dask and are written to an OME-Zarr store
(refined probabilities and labels), resumable as every out-of-core output.

``slice_wise=True`` (the default, as the CRF bundle treats a folder of 2D images) runs a 2D
CRF on every slice with the image scaled per slice; ``False`` runs the 3D CRF with ``spacing``
and the image scaled over the volume. Blocks are at least one halo wide apart from the border,
so the result equals the in-memory CRF wherever that one ran as a single block, and differs
from it only where kernels reach across a block border farther than the halo (measured in the
tests: under 0.1% of labels).

Example:
    >>> import tempfile, numpy as np, zarr
    >>> from cseg_monai.postprocessing import DenseCRF
    >>> d = tempfile.mkdtemp()
    >>> zarr.open_array(d + "/img.zarr", mode="w", shape=(2, 40, 40), dtype="u1")[:] = np.random.randint(0, 255, (2, 40, 40))
    >>> p = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, 40, 40)).transpose(3, 0, 1, 2).astype(np.float32)
    >>> zarr.open_array(d + "/prob.zarr", mode="w", shape=p.shape, dtype="f4")[:] = p
    >>> run = LargeCRF(DenseCRF(), block_shape=(1, 20, 20), chunks=(1, 20, 20), scheduler="synchronous", progress=False)
    >>> out = run.run_one(d + "/img.zarr", d + "/prob.zarr", d + "/out.ome.zarr")
    >>> out["blocks"], zarr.open_group(out["output"])["labels/segmentation/0"].shape
    (8, (2, 40, 40))
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from distributed import Client
from tqdm.auto import tqdm

from cseg_monai.data.block_store import PROB_DTYPES, BlockStore
from cseg_monai.data.lazy_volumes import LazyVolume, open_volume
from cseg_monai.data.readers import ImageReadError
from cseg_monai.postprocessing.crf import DenseCRF
from cseg_monai.workflows.folder_run import FileReport
from cseg_monai.workflows.large_volume import IntensityNorm, block_items, close_client, dask_client, large_inputs, output_name, run_blocks

__all__ = ["LargeCRF", "open_probabilities"]

Box = tuple[tuple[int, int], ...]


def open_probabilities(path: str | os.PathLike) -> tuple[Any, float]:
    """``(array (C, Z, Y, X), scale)`` of a probability store: stored value x scale = probability.

    Reads an OME-Zarr output of out-of-core inference (its ``0`` array and ``prob_scale``) or a
    plain zarr array.

    Raises:
        FileNotFoundError: no such store. ImageReadError: not a zarr store of 4 axes.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"probabilities {path} do not exist")
    try:
        node = zarr.open(store=path, mode="r")
    except Exception as exc:
        raise ImageReadError(f"{path}: not a zarr store of probabilities ({type(exc).__name__}: {exc})") from exc
    scale = 1.0
    if isinstance(node, zarr.Group):
        info = dict(node.attrs).get("cseg_inference", {})
        if "0" not in node:
            raise ImageReadError(f"{path}: a zarr group without the array '0' (an OME-Zarr output of cseg infer --large)")
        node, scale = node["0"], float(info.get("prob_scale", PROB_DTYPES["uint8"][1] if node["0"].dtype == np.uint8 else 1.0))
    if node.ndim != 4:
        raise ImageReadError(f"{path}: probabilities of shape {node.shape}; expected (classes, Z, Y, X)")
    return node, scale


def _fingerprint_of(path: str | os.PathLike) -> str | None:
    """The fingerprint of the run that wrote an out-of-core output (changes when it is rewritten with other settings)."""
    try:
        return dict(zarr.open_group(str(path), mode="r").attrs).get("cseg_inference", {}).get("fingerprint")
    except Exception:  # noqa: BLE001 - a plain zarr array has no run record
        return None


class _Job:
    def __init__(self, crf: DenseCRF, volume: LazyVolume, norm: IntensityNorm, prob_path: str, scale: float, store: BlockStore,
                 halo: tuple[int, ...], spacing: tuple[float, ...] | None, slice_wise: bool) -> None:  # fmt: skip
        self.crf, self.volume, self.norm, self.prob_path, self.scale, self.store = crf, volume, norm, prob_path, scale, store
        self.halo, self.spacing, self.slice_wise = halo, spacing, slice_wise

    def __call__(self, block_id: str, core: Box) -> str:
        shape = self.volume.shape
        outer = tuple((max(a - h, 0), min(b + h, n)) for (a, b), h, n in zip(core, self.halo, shape))
        sl = tuple(slice(a, b) for a, b in outer)
        image = self.norm.apply(self.volume[sl].astype(np.float32), z0=outer[0][0])
        prob, _ = open_probabilities(self.prob_path)
        p = np.asarray(prob[(slice(None),) + sl], dtype=np.float32) * np.float32(self.scale)
        if self.slice_wise:
            refined = np.stack([self.crf(p[:, z], image[z], self.spacing, name=self.prob_path) for z in range(p.shape[1])], axis=1)
        else:
            refined = self.crf(p, image, self.spacing, name=self.prob_path)
        inner = (slice(None),) + tuple(slice(c0 - o0, c1 - o0) for (c0, c1), (o0, _) in zip(core, outer))
        refined = refined[inner]
        self.store.write(core, refined, refined.argmax(0).astype(np.uint8))
        self.store.mark_done(block_id)
        return block_id


def _run(job: _Job, block_id: str, core: Box) -> str:
    return job(block_id, core)


class LargeCRF:
    """The dense CRF over probability volumes larger than memory (see the module docstring).

    Args:
        crf: the configured :class:`~cseg_monai.postprocessing.DenseCRF` (native backend; each
            block is one CRF block, its ``block_voxels`` is raised to fit).
        spacing: voxel size (Z, Y, X), or (Y, X) for slice-wise runs, in the units of the sigmas (default 1).
        slice_wise: a 2D CRF per slice (default) or one 3D CRF.
        prob_dtype: the refined probabilities' encoding (``"uint8"``, ``"float16"``, ``"float32"``).
        block_shape / chunks: block cores and the output's chunks (Z, Y, X); blocks are unions of chunks.
        scheduler / n_workers / threads_per_worker / overwrite / progress: as
            :class:`~cseg_monai.workflows.large_volume.LargeVolumeInference`.

    Memory per block in flight: about 4 B x (2 x classes + 3) x (block + halo), e.g. 0.7 GB for
    6 classes and an 8 x 1024 x 1024 block with the default 30-voxel halo, plus the CRF's
    filtering buffers.
    """

    def __init__(
        self,
        crf: DenseCRF,
        spacing: Sequence[float] | None = None,
        slice_wise: bool = True,
        prob_dtype: str = "uint8",
        block_shape: Sequence[int] = (8, 1024, 1024),
        chunks: Sequence[int] = (8, 256, 256),
        scheduler: str | None = None,
        n_workers: int = 1,
        threads_per_worker: int | None = None,
        overwrite: bool = False,
        progress: bool | None = None,
        halo_sigmas: float = 3.0,
    ) -> None:
        if not isinstance(crf, DenseCRF):
            raise TypeError(f"crf must be a cseg_monai.postprocessing.DenseCRF, got {type(crf).__name__}")
        if crf.backend != "native":
            raise ValueError("out-of-core CRF runs the native backend (pydensecrf has no block interface)")
        if prob_dtype not in PROB_DTYPES:
            raise ValueError(f"prob_dtype must be one of {list(PROB_DTYPES)}, got {prob_dtype!r}")
        self.block_shape, self.chunks = tuple(int(b) for b in block_shape), tuple(int(c) for c in chunks)
        if len(self.block_shape) != 3 or len(self.chunks) != 3 or any(c < 1 or b < 1 or b % c for b, c in zip(self.block_shape, self.chunks)):
            raise ValueError(f"block_shape {self.block_shape} must be a positive multiple of chunks {self.chunks} on every axis (Z, Y, X)")
        self.crf, self.slice_wise = crf, bool(slice_wise)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        if self.spacing is not None and len(self.spacing) != (2 if self.slice_wise else 3):
            raise ValueError(f"spacing {self.spacing} must give {'(Y, X)' if self.slice_wise else '(Z, Y, X)'}")
        self.prob_dtype, self.overwrite = prob_dtype, bool(overwrite)
        if not float(halo_sigmas) > 0:
            raise ValueError(f"halo_sigmas must be > 0, got {halo_sigmas}")
        self.halo_sigmas = float(halo_sigmas)
        self.scheduler, self.n_workers = scheduler, int(n_workers)
        self.threads_per_worker = int(threads_per_worker) if threads_per_worker else 1
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)

    def halo(self) -> tuple[int, int, int]:
        """Context per axis: ``halo_sigmas`` x the widest kernel sigma in voxels (0 on z for slice-wise runs)."""
        p = self.crf.params
        sigma = max(float(np.max(p.smoothness_sigma)), float(np.max(p.appearance_sigma)))
        spacing = self.spacing or (1.0,) * (2 if self.slice_wise else 3)
        halo = [int(math.ceil(self.halo_sigmas * sigma / s)) for s in spacing]
        return (0, *halo) if self.slice_wise else tuple(halo)  # type: ignore[return-value]

    def run_one(self, image: str | os.PathLike, probabilities: str | os.PathLike, output: str | os.PathLike, client: Client | None = None) -> dict[str, Any]:
        """Refine one volume's probabilities into the OME-Zarr store ``output`` (resumes an interrupted run).

        Raises:
            ValueError: probabilities that do not fit the image; ImageReadError: unreadable inputs.
        """
        start = time.perf_counter()
        volume = open_volume(image)
        if volume.ndim != 3:
            raise ImageReadError(f"{volume.path}: out-of-core CRF needs a (Z, Y, X) volume, got shape {volume.shape}")
        prob, scale = open_probabilities(probabilities)
        if tuple(prob.shape[1:]) != volume.shape:
            raise ValueError(f"{probabilities}: probabilities of shape {prob.shape} do not fit the image {volume.path} {volume.shape}")
        halo = self.halo()
        outer_voxels = int(np.prod([min(b + 2 * h, n) for b, h, n in zip(self.block_shape, halo, volume.shape)]))
        self.crf.block_voxels = max(self.crf.block_voxels, outer_voxels)  # each block is one CRF block
        arguments = {
            "input": {"path": os.path.abspath(volume.path), "dataset": volume.dataset, "token": volume.token()},
            "probabilities": {"path": os.path.abspath(str(probabilities)), "shape": list(prob.shape), "written_by": _fingerprint_of(probabilities)},
            "crf": self.crf.params.to_dict() if hasattr(self.crf.params, "to_dict") else repr(self.crf.params),
            "spacing": self.spacing, "slice_wise": self.slice_wise, "block_shape": self.block_shape,
        }  # fmt: skip
        store = BlockStore.create(
            output, tuple(prob.shape), chunks=tuple(min(c, n) for c, n in zip(self.chunks, volume.shape)), prob_dtype=self.prob_dtype,
            labels_dtype="uint8", spacing=volume.spacing, spacing_unit=volume.spacing_unit, arguments=arguments, overwrite=self.overwrite,
        )  # fmt: skip
        blocks = block_items(volume.shape, self.block_shape)
        record = {"output": store.final, "shape": list(volume.shape), "classes": int(prob.shape[0]), "halo": list(halo), "blocks": len(blocks)}
        if store.complete:
            return {**record, "skipped": len(blocks), "seconds": 0.0}
        done = store.done_blocks()
        todo = [(i, core) for i, core in blocks if i not in done]
        mode = "unit_range_per_slice" if self.slice_wise else "unit_range"
        norm = IntensityNorm.fit_cached(store, volume.to_dask(), mode, name=volume.path) if todo else IntensityNorm("none")
        job = _Job(self.crf, volume, norm, str(probabilities), scale, store, halo, self.spacing, self.slice_wise)
        bar = tqdm(total=len(blocks), initial=len(blocks) - len(todo), desc=f"CRF {Path(volume.path).name}", unit="block", disable=not self.progress)
        try:
            run_blocks(_run, [job], todo, client, bar)
        finally:
            bar.close()
        final = store.finish()
        return {**record, "output": final, "skipped": len(blocks) - len(todo), "seconds": round(time.perf_counter() - start, 3)}

    def run(self, images: str | os.PathLike, probabilities_dir: str | os.PathLike, output_dir: str | os.PathLike) -> dict[str, Any]:
        """Refine every volume of ``images`` with ``probabilities_dir/NAME.ome.zarr``; a failing pair is reported and skipped.

        Raises:
            FolderRunError: after all pairs were tried, naming each one that failed.
        """
        paths = large_inputs(images)
        report = FileReport(output_dir, total=len(paths), progress=False, desc="volumes")
        if Path(probabilities_dir).resolve() == Path(output_dir).resolve():
            raise ValueError(f"output_dir {output_dir} holds the input probabilities: choose another folder")
        client = dask_client(self.scheduler, self.n_workers, self.threads_per_worker) if paths else None
        try:
            for path in paths:
                name = output_name(path)
                with report.item(path) as record:
                    record.update(self.run_one(path, Path(probabilities_dir) / f"{name}.ome.zarr", Path(output_dir) / f"{name}.ome.zarr", client))
        finally:
            close_client(client)
        return report.finish()

