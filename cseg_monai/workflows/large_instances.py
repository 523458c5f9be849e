"""Out-of-core 3D instances: the instance bundle's ``inference.json`` for volumes larger than memory.

:class:`LargeInstanceInference` does what the instance bundle's in-memory inference does
(rescale to the model's voxel and object size, percentile scaling, sliding window with
Gaussian blending and replicate padding, sigmoid, watershed + multicut, back to the input's
grid), in passes over blocks that each fit in memory, on Dask, into an OME-Zarr store:

1. ``input``: the volume resampled to the model's grid box by box
   (:mod:`~cseg_monai.transforms.block_resample`, equal to the in-memory ``interpolate``);
   skipped when the model's grid is the input's;
2. the 1st / 99.8th percentiles of that volume, exactly (:func:`~cseg_monai.data.volume_statistics.exact_percentiles`);
3. ``partial`` and ``prob``: boundary and foreground probabilities with the windows of a
   whole-volume run (:class:`~cseg_monai.inferers.BlockSlidingWindow`), so they equal
   in-memory inference to float tolerance. Each window is computed once, by the block that
   holds its start (``partial``: the weighted outputs over the core, and what spills past it
   saved as slabs); ``prob`` adds the spills of the neighbours, divides by the blending
   weights and applies the sigmoid. (Blocks that each computed every window touching their
   core ran the windows across a border twice: 1.07 times the windows of a 64 x 1024 x 1024
   volume in 32 x 1024 x 1024 blocks with the generalist's 8 x 96 x 96 windows at overlap 0.5,
   more with smaller blocks.)
4. ``segment``: each block's core plus ``stitch_halo`` segmented
   (:func:`~cseg_monai.postprocessing.block_instances.segment_one_block`);
5. ``match``: each block's halo ids matched with its neighbours' core ids by overlap
   (:func:`~cseg_monai.postprocessing.block_instances.stitch_pairs`), then ``stitch`` (on the
   client, from small per-block tables): ids joined where both blocks agree, the size,
   background, major-axis and edge-sliver filters applied to whole objects, ids 1..N (:func:`~cseg_monai.postprocessing.block_instances.merge_table`);
6. ``relabel`` and ``output``: final ids, then probabilities (linear) and ids (nearest)
   resampled back to the input's grid and written block by block (``uint32`` labels).

Every pass records its finished blocks, and its intermediate arrays live inside the
unfinished store (``NAME.ome.zarr.partial/.cseg_work``): a run restarted with the same
arguments resumes in the pass where it stopped; the intermediates go when the store is
complete. Memory is bounded per block: see :class:`LargeInstanceInference` for the sizes.

The object size of an input (when ``object_size`` is set and ``object_diameter`` is not) is
measured on a central crop of at most ``estimate_box`` voxels (64 x 1024 x 1024 by default); a
volume larger than that is measured on part of it, so its zoom, and with it the result, can
differ a little from ``inference.json``, which measures the whole volume. The summary records
the crop; ``--object_diameter`` fixes the zoom for both.

Example:
    >>> import tempfile, numpy as np, torch, zarr
    >>> from cseg_monai.postprocessing import InstanceParams
    >>> from cseg_monai.transforms import RescaleToSpacingd
    >>> src = tempfile.mkdtemp() + "/v.zarr"
    >>> zarr.open_array(src, mode="w", shape=(4, 40, 40), chunks=(4, 20, 20), dtype="u1")[:] = np.random.randint(0, 255, (4, 40, 40))
    >>> net = torch.nn.Conv3d(1, 2, 3, padding=1)
    >>> run = LargeInstanceInference(net, rescale=RescaleToSpacingd("image", model_spacing=None), roi_size=(4, 16, 16),
    ...                              instance_params=InstanceParams(mask_watershed=True), block_shape=(4, 20, 20),
    ...                              chunks=(4, 20, 20), stitch_halo=(2, 8, 8), scheduler="synchronous", progress=False)
    >>> out = run.run_one(src, tempfile.mkdtemp() + "/v.ome.zarr")
    >>> out["blocks"], zarr.open_group(out["output"])["labels/segmentation/0"].dtype == np.uint32
    (4, True)
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import torch
import zarr
from distributed import Client
from tqdm.auto import tqdm

from cseg_monai.data.block_store import BlockStore
from cseg_monai.data.lazy_volumes import LazyVolume, open_volume
from cseg_monai.data.readers import ImageReadError
from cseg_monai.data.volume_statistics import exact_percentiles
from cseg_monai.inferers.block_sliding_window import BlockSlidingWindow, read_box
from cseg_monai.postprocessing.block_instances import merge_table, mutual_pairs, relabel, segment_one_block, stitch_pairs
from cseg_monai.postprocessing.instance_params import InstanceParams
from cseg_monai.transforms.block_resample import resample_box, source_box
from cseg_monai.transforms.spacing import RescalePlan, RescaleToSpacingd
from cseg_monai.workflows.large_volume import LargeVolumeInference

__all__ = ["LargeInstanceInference", "PASSES", "spill_sources"]

logger = logging.getLogger(__name__)

#: The passes of one volume, in order (each one's finished blocks are recorded).
PASSES = ("input", "partial", "prob", "segment", "match", "stitch", "relabel", "output")

Box = tuple[tuple[int, int], ...]


def _work(store: BlockStore, name: str) -> Any:
    """A work array of ``store`` (opened per task: cheap, and never a stale handle of an earlier run)."""
    return zarr.open_array(store.work_path(name), mode="r+", zarr_format=2)


def _sl(box: Box) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in box)


class _Job:
    """What the block tasks of one volume share (sent once to each worker)."""

    def __init__(self, volume: LazyVolume, store: BlockStore, model_shape: tuple[int, ...], rescales: bool) -> None:
        self.volume, self.store, self.model_shape, self.rescales = volume, store, model_shape, rescales
        self.window: BlockSlidingWindow | None = None
        self.percentiles: tuple[float, float] = (0.0, 1.0)
        self.params: InstanceParams | None = None
        self.grid: list[float] | None = None
        self.halo: tuple[int, ...] = ()
        self.cores: dict[str, Box] = {}
        self.index: dict[str, int] = {}
        self.channels: tuple[int, int | None] = (0, 1)
        self.spills_into: dict[str, list[str]] = {}
        self.iou = 0.5
        self._lut: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_lut": None}

    def source(self) -> Any:
        """The model-grid input: the resampled work array, or the volume itself."""
        return _work(self.store, "input") if self.rescales else self.volume


def _resample_input(job: _Job, block_id: str, core: Box) -> str:
    vol = job.volume
    src = source_box(vol.shape, job.model_shape, core, "linear")
    part = resample_box(vol[_sl(src)].astype(np.float32), src, vol.shape, job.model_shape, core, "linear")
    _work(job.store, "input")[_sl(core)] = part
    job.store.mark_done(block_id, "input")
    return block_id


def _outside(spill: Box, core: Box) -> list[Box]:
    """``spill`` less ``core`` (which it starts with) as disjoint boxes: one slab per axis."""
    slabs = []
    for k, ((_, c1), (_, s1)) in enumerate(zip(core, spill)):
        if s1 > c1:
            slabs.append(tuple(core[:k]) + ((c1, s1),) + tuple(spill[k + 1 :]))
    return slabs


def _predict(job: _Job, network: torch.nn.Module, block_id: str, core: Box) -> str:
    """The weighted outputs of the windows this block owns: the core's part into ``num``, the spill as slabs."""
    assert job.window is not None
    box = job.window.owned_input_box(core)
    if box is not None:
        lo, hi = np.float32(job.percentiles[0]), np.float32(job.percentiles[1])
        x = read_box(job.source(), box, mode="replicate")
        # MONAI's ScaleIntensityRange (b_min 0, b_max 1) with clip, as ScaleIntensityRangePercentilesd
        x = (x - lo) / (hi - lo) if hi != lo else x - lo
        num = job.window.accumulate(np.clip(x, 0.0, 1.0).astype(np.float32), box, core, network).numpy()
        spill = job.window.spill_box(core)
        at = tuple(slice(a - s0, b - s0) for (a, b), (s0, _) in zip(core, spill))
        _work(job.store, "num")[(slice(None),) + _sl(core)] = num[(slice(None),) + at]
        slabs = {}
        for k, slab in enumerate(_outside(spill, core)):
            slabs[f"box_{k}"] = np.asarray(slab, np.int64)
            slabs[f"num_{k}"] = num[(slice(None),) + tuple(slice(a - s0, b - s0) for (a, b), (s0, _) in zip(slab, spill))]
        job.store.save_table(f"spill_{block_id}", **slabs)
    job.store.mark_done(block_id, "partial")
    return block_id


def _blend(job: _Job, block_id: str, core: Box) -> str:
    """The core's weighted sum (its own and its neighbours' spills) divided by the weights, through the sigmoid."""
    assert job.window is not None
    num = np.asarray(_work(job.store, "num")[(slice(None),) + _sl(core)], np.float32)
    for other in job.spills_into.get(block_id, []):
        table = job.store.load_table(f"spill_{other}")
        if table is None:
            raise RuntimeError(f"{job.store.path}: block {other} was marked done but its spill is missing")
        for k in range(sum(name.startswith("box_") for name in table)):
            slab = tuple((int(a), int(b)) for a, b in table[f"box_{k}"])
            both = tuple((max(a, c0), min(b, c1)) for (a, b), (c0, c1) in zip(slab, core))
            if all(a < b for a, b in both):
                src = tuple(slice(a - s0, b - s0) for (a, b), (s0, _) in zip(both, slab))
                num[(slice(None),) + tuple(slice(a - c0, b - c0) for (a, b), (c0, _) in zip(both, core))] += table[f"num_{k}"][(slice(None),) + src]
    _work(job.store, "prob")[(slice(None),) + _sl(core)] = job.window.blend(torch.from_numpy(num), core).numpy()
    job.store.mark_done(block_id, "prob")
    return block_id


def _segment(job: _Job, block_id: str, core: Box) -> str:
    assert job.params is not None
    outer = tuple((max(a - h, 0), min(b + h, n)) for (a, b), h, n in zip(core, job.halo, job.model_shape))
    index = tuple(int(i) for i in block_id.split("_"))
    near = [job.cores.get("_".join(str(i + d) for i, d in zip(index, step))) for step in itertools.product((-1, 0, 1), repeat=3) if any(step)]
    neighbours = [c for c in near if c is not None and all(a < o1 and b > o0 for (a, b), (o0, o1) in zip(c, outer))]
    prob = _work(job.store, "prob")[(slice(None),) + _sl(outer)]
    core_labels, table = segment_one_block(prob, core, outer, neighbours, job.index[block_id], job.params, job.grid, *job.channels,
                                           volume_shape=job.model_shape)
    _work(job.store, "raw")[_sl(core)] = core_labels
    job.store.save_table(f"segment_{block_id}", **table)
    job.store.mark_done(block_id, "segment")
    return block_id


def _match(job: _Job, block_id: str, core: Box) -> str:
    table = job.store.load_table(f"segment_{block_id}")
    if table is None:
        raise RuntimeError(f"{job.store.path}: block {block_id} was marked segmented but its table is missing")
    raw = _work(job.store, "raw")
    job.store.save_table(f"match_{block_id}", pairs=stitch_pairs(table, lambda box: raw[_sl(box)], job.iou))
    job.store.mark_done(block_id, "match")
    return block_id


def _relabel(job: _Job, block_id: str, core: Box) -> str:
    if job._lut is None:
        table = job.store.load_table("stitch")
        assert table is not None, "the stitch pass has not run"
        job._lut = (table["keys"], table["values"])
    _work(job.store, "labels")[_sl(core)] = relabel(_work(job.store, "raw")[_sl(core)], *job._lut)
    job.store.mark_done(block_id, "relabel")
    return block_id


def _write_output(job: _Job, block_id: str, core: Box) -> str:
    shape, model = job.volume.shape, job.model_shape
    src = source_box(model, shape, core, "linear")
    prob = resample_box(_work(job.store, "prob")[(slice(None),) + _sl(src)], src, model, shape, core, "linear")
    src = source_box(model, shape, core, "nearest")
    labels = resample_box(_work(job.store, "labels")[_sl(src)], src, model, shape, core, "nearest")
    job.store.write(core, prob, labels)
    job.store.mark_done(block_id, "output")
    return block_id


def spill_sources(window: BlockSlidingWindow, blocks: list[tuple[str, Box]]) -> dict[str, list[str]]:
    """For each block, the blocks whose owned windows write into its core (:meth:`BlockSlidingWindow.spill_box`).

    A window reaches at most one window minus one voxel past its owner's core, so only the blocks up to
    that many block lengths lower on each axis are tested (not every pair: a large volume has thousands).

    Example:
        >>> sw = BlockSlidingWindow((4, 100), (4, 32))
        >>> spill_sources(sw, [("0_0", ((0, 4), (0, 50))), ("0_1", ((0, 4), (50, 100)))])
        {'0_0': [], '0_1': ['0_0']}
    """
    cores = dict(blocks)
    index = {i: tuple(int(k) for k in i.split("_")) for i in cores}
    size = [max(b - a for a, b in (core[k] for core in cores.values())) for k in range(len(window.roi_size))]
    reach = [-(-(r - 1) // s) for r, s in zip(window.roi_size, size)]
    by_index = {v: k for k, v in index.items()}
    out: dict[str, list[str]] = {}
    for i, core in cores.items():
        found = []
        for step in itertools.product(*[range(-r, 1) for r in reach]):
            j = by_index.get(tuple(a + d for a, d in zip(index[i], step)))
            if j is None or j == i:
                continue
            spill = window.spill_box(cores[j])
            if all(max(a, c0) < min(b, c1) for (a, b), (c0, c1) in zip(spill, core)):
                found.append(j)
        out[i] = found
    return out


class LargeInstanceInference(LargeVolumeInference):
    """The instance bundle's inference over volumes larger than memory (see the module docstring).

    Args:
        network: the bundle's ``UNet3D`` (``@network_def``): 2 outputs, boundary and foreground.
        ckpt_path: its weights, or ``None`` when already loaded.
        rescale: the bundle's ``RescaleToSpacingd`` (model voxel size, object size, ``--spacing``,
            ``--object_diameter``); ``None``: no rescaling.
        roi_size / overlap / mode / sigma_scale / sw_batch_size: the bundle's sliding window.
        intensity_percentiles: the bundle's ``ScaleIntensityRangePercentilesd`` range (to [0, 1], clipped).
        instance_params: the bundle's ``instance_params``; every filter (size, background, major
            axis, edge slivers) applies to whole objects after stitching.
        boundary_channel / foreground_channel: which output is which.
        stitch_halo: context (model-grid voxels, Z, Y, X) each block's segmentation sees beyond
            its core; about one object diameter (default (8, 32, 32): in the generalist's grid a
            nucleus has a mean in-plane chord of 15 voxels, about 22 across in-plane and 10 in z).
        stitch_iou: overlap (IoU) above which two blocks' ids are one object.
        estimate_box: the central crop on which objects are measured.
        prob_dtype: ``"uint8"`` (x 255), ``"float16"`` or ``"float32"`` probabilities in the output.
        predict_block_shape: the block of the network pass (model grid), a multiple of
            ``block_shape`` (default: the largest multiple up to 32 x 1024 x 1024). Every block
            computes the windows that touch it, so a window across a block border runs once for
            each block it touches; large blocks keep that rare (by count, the default recomputes
            about 12% of the windows on z and 5% on y and on x of a large volume; 32 x 256 x 256
            blocks would recompute about 60% in all; 64 x 1024 x 1024 blocks 6% on z, at about
            twice the memory).
        block_shape: the block of the other passes, in voxels of the grid the pass works in (model
            grid, then input grid for the output); a multiple of ``chunks``.
        chunks: the output's chunks (Z, Y, X).
        scheduler / n_workers / threads_per_worker / overwrite / progress / device: as
            :class:`~cseg_monai.workflows.large_volume.LargeVolumeInference`.

    Memory per block in flight, roughly (V = voxels of a block, W = of a window): network pass
    4 B x (input box + 3 x 2 V) plus ``sw_batch_size`` x the network's activations on W;
    segmentation pass the watershed, region graph and multicut of one ``block_shape`` block plus
    its halo. The peak of the whole process tree with the defaults is measured by
    ``scripts/benchmarks/out_of_core.py`` (see the bundle's docs). Disk: the intermediates take
    24 B per model-grid voxel before compression (input 4, probabilities 8, block ids 8, final ids 4),
    plus each block's ids in its halo (compressed tables).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        ckpt_path: str | os.PathLike | None = None,
        rescale: RescaleToSpacingd | None = None,
        roi_size: Sequence[int] = (8, 96, 96),
        overlap: float = 0.5,
        mode: str = "gaussian",
        sigma_scale: float = 0.125,
        sw_batch_size: int = 2,
        intensity_percentiles: Sequence[float] = (1.0, 99.8),
        instance_params: InstanceParams | None = None,
        boundary_channel: int = 0,
        foreground_channel: int | None = 1,
        stitch_halo: Sequence[int] = (8, 32, 32),
        stitch_iou: float = 0.5,
        estimate_box: Sequence[int] = (64, 1024, 1024),
        prob_dtype: str = "uint8",
        predict_block_shape: Sequence[int] | None = None,
        block_shape: Sequence[int] = (32, 256, 256),
        chunks: Sequence[int] = (32, 128, 128),
        scheduler: str | None = None,
        n_workers: int = 1,
        threads_per_worker: int | None = None,
        overwrite: bool = False,
        progress: bool | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if len(tuple(roi_size)) != 3 or len(tuple(block_shape)) != 3:
            raise ValueError(f"roi_size {tuple(roi_size)} and block_shape {tuple(block_shape)} must be (Z, Y, X)")
        super().__init__(
            network, ckpt_path, method="sliding_window", roi_size=roi_size, overlap=overlap, mode=mode, sigma_scale=sigma_scale,
            sw_batch_size=sw_batch_size, n_transforms=1, activation="sigmoid", normalise="none", labels=None, prob_dtype=prob_dtype,
            block_shape=block_shape, chunks=chunks, scheduler=scheduler, n_workers=n_workers, threads_per_worker=threads_per_worker,
            overwrite=overwrite, progress=progress, device=device,
        )  # fmt: skip
        self.rescale = rescale if rescale is not None else RescaleToSpacingd("image", model_spacing=None)
        if not isinstance(self.rescale, RescaleToSpacingd):
            raise ValueError(f"rescale must be a RescaleToSpacingd, got {type(rescale).__name__}")
        lo, hi = (float(q) for q in intensity_percentiles)
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"intensity_percentiles must be (low, high) with 0 <= low < high <= 100, got {tuple(intensity_percentiles)}")
        self.percentile_range = (lo, hi)
        self.params = instance_params or InstanceParams()
        if not isinstance(self.params, InstanceParams):
            raise ValueError(f"instance_params must be an InstanceParams, got {type(instance_params).__name__}")
        if self.params.mask_watershed and foreground_channel is None:
            raise ValueError("mask_watershed needs a foreground_channel")
        self.channels = (int(boundary_channel), None if foreground_channel is None else int(foreground_channel))
        self.stitch_halo = tuple(int(h) for h in stitch_halo)
        if len(self.stitch_halo) != 3 or min(self.stitch_halo) < 1:
            raise ValueError(f"stitch_halo {tuple(stitch_halo)} must be 3 widths >= 1 (Z, Y, X): without a halo, objects across block borders split")
        if any(h > b for h, b in zip(self.stitch_halo, self.block_shape)):
            raise ValueError(f"stitch_halo {self.stitch_halo} must not exceed block_shape {self.block_shape} (a block's halo reaches its neighbours only)")
        if not 0.0 < float(stitch_iou) <= 1.0:
            raise ValueError(f"stitch_iou must lie in (0, 1], got {stitch_iou}")
        self.stitch_iou = float(stitch_iou)
        if predict_block_shape is None:
            predict_block_shape = [b * max(1, t // b) for b, t in zip(self.block_shape, (32, 1024, 1024))]
        self.predict_block_shape = tuple(int(b) for b in predict_block_shape)
        if len(self.predict_block_shape) != 3 or any(p < b or p % b for p, b in zip(self.predict_block_shape, self.block_shape)):
            raise ValueError(f"predict_block_shape {self.predict_block_shape} must be a multiple of block_shape {self.block_shape} on every axis")
        self.estimate_box = tuple(int(e) for e in estimate_box)
        if len(self.estimate_box) != 3 or min(self.estimate_box) < 1:
            raise ValueError(f"estimate_box {tuple(estimate_box)} must be 3 positive sizes (Z, Y, X)")

    def _estimate_crop(self, volume: LazyVolume) -> np.ndarray:
        starts = [max((n - e) // 2, 0) for n, e in zip(volume.shape, self.estimate_box)]
        return volume[tuple(slice(s, s + e) for s, e in zip(starts, self.estimate_box))].astype(np.float32)

    def _plan(self, volume: LazyVolume) -> RescalePlan:
        return self.rescale.plan(volume.shape, volume.spacing, lambda: self._estimate_crop(volume), name=volume.path)

    def _instance_arguments(self, volume: LazyVolume, plan: RescalePlan) -> dict[str, Any]:
        rescale = {k: getattr(self.rescale, k) for k in ("model_spacing", "spacing", "default_spacing", "object_size", "object_diameter", "tolerance")}
        return {
            **self._arguments(volume),
            "rescale": {**rescale, "zoom": plan.zoom, "new_shape": plan.new_shape, "estimate_box": self.estimate_box},
            "percentiles": self.percentile_range,
            "instance_params": self.params.to_dict(),
            "channels": self.channels,
            "stitch": [self.stitch_halo, self.stitch_iou],
            "predict_block_shape": self.predict_block_shape,
            "predict": "owned_windows",  # each window once (stores of the earlier scheme are not resumed)
        }

    def run_one(self, path: str | os.PathLike, output: str | os.PathLike, client: Client | None = None) -> dict[str, Any]:
        """Segment one volume into the OME-Zarr store ``output``; resume it when interrupted before.

        Returns:
            ``{"output", "shape", "model_shape", "zoom", "spacing", "spacing_source", "object_size_source",
            "instances", "blocks", "skipped", "seconds", "vox_per_s"}`` (plus ``object_chord`` when measured).

        Raises:
            ImageReadError: a volume that is not 3D; ValueError: a constant volume, NaN.
        """
        start = time.perf_counter()
        self._timings: dict[str, float] = {}
        volume = open_volume(path)
        if volume.ndim != 3:
            raise ImageReadError(f"{volume.path}: out-of-core instances need a (Z, Y, X) volume, got shape {volume.shape}; use inference.json")
        with torch.no_grad():
            channels = int(self.network.to(self.device)(torch.zeros((1, 1) + self.window_settings["roi_size"], device=self.device)).shape[1])
        if channels <= max(c for c in self.channels if c is not None):
            raise ValueError(f"the network gives {channels} output channel(s); boundary / foreground channels {self.channels} do not exist")
        plan = self._plan(volume)
        model_shape = tuple(plan.new_shape)
        block = tuple(min(b, n) for b, n in zip(self.block_shape, model_shape))
        store = BlockStore.create(
            output, (channels,) + volume.shape, chunks=tuple(min(c, n) for c, n in zip(self.chunks, volume.shape)), prob_dtype=self.prob_dtype,
            labels_dtype="uint32", spacing=plan.spacing, spacing_unit=volume.spacing_unit if plan.source == "file" else "um" if plan.spacing else None,
            arguments=self._instance_arguments(volume, plan), overwrite=self.overwrite,
        )  # fmt: skip
        out_blocks = self._blocks(volume.shape)
        record: dict[str, Any] = {
            "output": store.final, "shape": list(volume.shape), "model_shape": list(model_shape), "zoom": plan.zoom, "spacing": plan.spacing,
            "spacing_source": plan.source, **plan.meta, "blocks": len(out_blocks),
        }  # fmt: skip
        if plan.meta.get("object_size_source") == "estimated":
            record["object_estimate_box"] = [min(e, n) for e, n in zip(self.estimate_box, volume.shape)]
        if store.complete:
            return {**record, "instances": store.results.get("instances"), "skipped": len(out_blocks), "seconds": 0.0, "vox_per_s": None}
        model_blocks = self._blocks(model_shape)
        job = _Job(volume, store, model_shape, plan.rescales)
        if plan.rescales:
            store.work_array("input", model_shape, block, "float32")
        store.work_array("num", (channels,) + model_shape, (1,) + block, "float32")
        store.work_array("prob", (channels,) + model_shape, (1,) + block, "float32")
        store.work_array("raw", model_shape, block, "uint64")
        store.work_array("labels", model_shape, block, "uint32")
        if plan.rescales:
            self._pass(store, "input", model_blocks, _resample_input, [job], client)
        norm = store.load_table("percentiles")
        tic = time.perf_counter()
        if norm is None:
            source = da.from_zarr(store.work_path("input")) if plan.rescales else volume.to_dask()
            values = exact_percentiles(source, self.percentile_range, name=volume.path)
            if not values[1] > values[0]:
                raise ValueError(f"{volume.path}: the volume is constant between the {self.percentile_range} percentiles ({values[0]}); nothing to segment")
            store.save_table("percentiles", values=values)
            norm = {"values": values}
        job.percentiles = (float(norm["values"][0]), float(norm["values"][1]))
        self._timings["percentiles"] = round(time.perf_counter() - tic, 3)
        job.window = BlockSlidingWindow(model_shape, device=self.device, **self.window_settings)
        predict_blocks = self._blocks(model_shape, self.predict_block_shape)
        job.spills_into = spill_sources(job.window, predict_blocks)
        self._pass(store, "partial", predict_blocks, _predict, [job, self.network.to(self.device)], client)
        self._pass(store, "prob", predict_blocks, _blend, [job], client)
        job.params, job.grid, job.halo, job.channels = self.params, plan.grid, self.stitch_halo, self.channels
        job.cores = dict(model_blocks)
        job.index = {block_id: k for k, (block_id, _) in enumerate(model_blocks)}
        self._pass(store, "segment", model_blocks, _segment, [job], client)
        job.iou = self.stitch_iou
        self._pass(store, "match", model_blocks, _match, [job], client)
        table = store.load_table("stitch")
        tic = time.perf_counter()
        if table is None:
            table = self._stitch(store, [block_id for block_id, _ in model_blocks])
        self._timings["stitch"] = round(time.perf_counter() - tic, 3)
        instances = int(table["values"].max()) if len(table["values"]) else 0
        self._pass(store, "relabel", model_blocks, _relabel, [job], client)
        written = self._pass(store, "output", out_blocks, _write_output, [job], client)
        store.save_results(instances=instances, rescale={**plan.meta, "zoom": plan.zoom})
        final = store.finish()
        seconds = time.perf_counter() - start
        logger.info("%s: %d instances in %.1f s -> %s", volume.path, instances, seconds, final)
        return {**record, "output": final, "instances": instances, "skipped": len(out_blocks) - written,
                "seconds": round(seconds, 3), "pass_seconds": dict(self._timings),
                "vox_per_s": round(volume.size / seconds, 1) if seconds > 0 else None}  # fmt: skip

    def _stitch(self, store: BlockStore, block_ids: list[str]) -> dict[str, np.ndarray]:
        """Join the matched ids (both sides agreeing) and number the objects (the ``stitch`` step, on the client)."""
        fields = ("ids", "counts", "background", "first", "second", "edge")
        columns: dict[str, list[np.ndarray]] = {k: [] for k in fields}
        pairs = []
        for block_id in tqdm(block_ids, desc="stitch", unit="block", disable=not self.progress):
            table = store.load_table(f"segment_{block_id}", keys=fields)
            matched = store.load_table(f"match_{block_id}")
            if table is None or matched is None:
                raise RuntimeError(f"{store.path}: block {block_id} was marked done but its tables are missing")
            for k in fields:
                columns[k].append(table[k])
            pairs.append(matched["pairs"])
        stacked = {k: np.concatenate(v) for k, v in columns.items()}
        p = self.params
        keys, values = merge_table(
            stacked["ids"], stacked["counts"], mutual_pairs(np.concatenate(pairs)), stacked["background"], p.min_size, p.max_size,
            {k: stacked[k] for k in ("first", "second", "edge")}, p.min_major_axis, p.max_major_axis, p.edge_min_fraction,
        )  # fmt: skip
        store.save_table("stitch", keys=keys, values=values)
        return {"keys": keys, "values": values}
