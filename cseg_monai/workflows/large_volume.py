"""Out-of-core inference: volumes larger than memory, block by block, on Dask, resumable.

:class:`LargeVolumeInference` runs a bundle's network over a volume it never holds in memory:

1. the input is opened lazily (:func:`~cseg_monai.data.lazy_volumes.open_volume`: zarr and
   OME-Zarr, HDF5, multi-page TIFF page by page, a folder of slices);
2. the intensity statistics the bundle's preprocessing needs (mean and standard deviation of
   each slice, or of the volume) come from one ``dask.array`` pass over it;
3. the volume is cut into blocks aligned with the output's chunks; each block reads its core
   plus the halo that the sliding window needs and computes exactly the windows of a
   whole-volume run (:class:`~cseg_monai.inferers.BlockSlidingWindow`, Gaussian blending and
   test-time augmentation included), so the stitched output equals in-memory inference to
   float tolerance, with no seams;
4. each block is written to an OME-Zarr store as soon as it is done
   (:class:`~cseg_monai.data.block_store.BlockStore`): probabilities as uint8 (x 255) or float16,
   labels as integers; a rerun with the same arguments skips the finished blocks;
5. blocks run on a ``dask.distributed`` cluster: a ``LocalCluster`` by default (``n_workers`` x
   ``threads_per_worker``), an existing scheduler with ``scheduler="tcp://host:port"``, or
   in this process with ``scheduler="synchronous"``. The network is sent once to every worker
   (``Client.scatter(..., broadcast=True)``) and reused for all its blocks.

Memory is bounded by the blocks in flight (workers x threads), not by the volume: per block
about ``4 bytes x (input box + (channels + 1) x core + sw_batch_size x the network's activations
on one window)``; the input box is the core plus up to one window minus one voxel on each side.

Bundle configs call it from ``configs/inference_large.json``::

    "large_inference": {"_target_": "cseg_monai.workflows.large_volume.LargeVolumeInference", ...},
    "run": ["$@large_inference.run(@large_inputs, @output_dir)"]

Example:
    >>> import tempfile, numpy as np, torch, zarr
    >>> src = tempfile.mkdtemp() + "/v.zarr"
    >>> zarr.open_array(src, mode="w", shape=(3, 40, 40), chunks=(1, 40, 40), dtype="u1")[:] = np.random.randint(0, 255, (3, 40, 40))
    >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
    >>> run = LargeVolumeInference(net, roi_size=(32, 32), activation="sigmoid", block_shape=(2, 40, 40), chunks=(1, 40, 40),
    ...                            scheduler="synchronous", progress=False)
    >>> out = run.run_one(src, tempfile.mkdtemp() + "/v.ome.zarr")
    >>> out["blocks"], zarr.open_group(out["output"])["0"].shape
    (2, (1, 3, 40, 40))
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import torch
import zarr
from distributed import Client, LocalCluster, as_completed
from tqdm.auto import tqdm

from cseg_monai.common.tiling import iter_blocks, reflect_indices
from cseg_monai.data.block_store import PROB_DTYPES, BlockStore
from cseg_monai.data.lazy_volumes import LAZY_SUFFIXES, LazyVolume, open_volume
from cseg_monai.data.readers import SLICE_SUFFIXES, TIFF_SUFFIXES, ImageReadError, N5Reader, ZarrReader
from cseg_monai.data.volume_statistics import exact_percentiles
from cseg_monai.inferers.block_centre_voxel import BlockCentreVoxel
from cseg_monai.inferers.block_sliding_window import BlockSlidingWindow, read_box
from cseg_monai.postprocessing.block_components import local_components, merge_components, touching_pairs
from cseg_monai.postprocessing.block_instances import relabel
from cseg_monai.workflows.folder_run import FileReport

__all__ = [
    "IntensityNorm",
    "LargeVolumeInference",
    "NORMALISATIONS",
    "large_inputs",
    "close_client",
    "dask_client",
    "load_weights",
    "output_name",
    "block_items",
    "run_blocks",
    "worker_environment",
]

logger = logging.getLogger(__name__)

#: Intensity normalisations: what the bundle's in-memory preprocessing does, from whole-volume statistics.
NORMALISATIONS = ("mean_std_per_slice", "mean_std", "unit_range_per_slice", "unit_range", "percentiles", "none")
#: How blocks are computed: MONAI-style sliding windows, or dense centre-voxel classification.
METHODS = ("sliding_window", "centre_voxel")
LABELS = ("threshold", "argmax", "components", None)


class IntensityNorm:
    """``(x - mean) / std`` with statistics of each slice or of the whole volume.

    ``mean_std``: MONAI's ``NormalizeIntensity`` (a standard deviation of 0 divides by 1, as
    MONAI does). ``unit_range``: the organelle bundle's scaling (uint8 / 255; other dtypes
    min-max to [0, 1], a constant image to 0), i.e. mean = min and std = max - min.
    ``percentiles``: MONAI's ``ScaleIntensityRangePercentiles`` to [0, 1] with ``clip=True``
    (the cleft and instance bundles): the volume's exact ``percentiles`` (numpy's linear rule,
    :func:`~cseg_monai.data.volume_statistics.exact_percentiles`) map to 0 and 1, then clipped.

    Args:
        mode: ``"mean_std_per_slice"`` / ``"unit_range_per_slice"`` (each slice of the leading
            axis on its own, as a 2D bundle scales each image), ``"mean_std"`` / ``"unit_range"``
            (the volume), ``"percentiles"``, or ``"none"``.
        mean / std: one value per slice, or one value.
        clip: clip the result to [0, 1] (``"percentiles"``).

    Example:
        >>> import dask.array as da
        >>> norm = IntensityNorm.fit(da.from_array(np.array([[[0.0, 2.0]], [[5.0, 5.0]]])), "mean_std_per_slice")
        >>> norm.apply(np.array([[[0.0, 2.0]], [[5.0, 5.0]]], np.float32), z0=0).tolist()
        [[[-1.0, 1.0]], [[0.0, 0.0]]]
    """

    def __init__(self, mode: str, mean: np.ndarray | float = 0.0, std: np.ndarray | float = 1.0, clip: bool = False) -> None:
        if mode not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {mode!r}")
        self.mode, self.clip = mode, bool(clip)
        self.mean = np.asarray(mean, dtype=np.float64)
        std = np.asarray(std, dtype=np.float64)
        self.std = np.where(std == 0, 1.0, std)

    @classmethod
    def fit(cls, array: Any, mode: str, name: str = "input", percentiles: Sequence[float] = (1.0, 99.0)) -> IntensityNorm:
        """Statistics of ``array`` (a ``dask.array``, computed in one pass, two for ``"percentiles"``;
        NaN or infinity is an error naming ``name``)."""
        if mode not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {mode!r}")
        if mode == "none":
            return cls(mode)
        if mode == "percentiles":
            lo, hi = exact_percentiles(array, percentiles, name=name)
            return cls(mode, lo, hi - lo, clip=bool(hi > lo))  # hi == lo: x - lo, unclipped, as MONAI's ScaleIntensityRange
        per_slice = mode.endswith("_per_slice") and array.ndim == 3
        axes = tuple(range(1, array.ndim)) if per_slice else None
        whole = mode.removesuffix("_per_slice")
        if whole == "unit_range" and array.dtype == np.uint8:
            return cls(mode, 0.0, 255.0)
        x = array.astype(np.float64)
        if whole == "unit_range":
            lo, hi = dask.compute(x.min(axis=axes), x.max(axis=axes))
            mean, std = lo, np.where(hi > lo, hi - lo, np.inf)  # constant image -> 0, as the in-memory scaling
        else:
            mean, std = dask.compute(x.mean(axis=axes), x.std(axis=axes))
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std) | (std == np.inf))):
            raise ValueError(f"{name}: the volume contains NaN or infinite values")
        return cls(mode if per_slice else whole, mean, std)

    @classmethod
    def fit_cached(cls, store: BlockStore, array: Any, mode: str, name: str = "input", percentiles: Sequence[float] = (1.0, 99.0)) -> IntensityNorm:
        """:meth:`fit`, computed once per run: the statistics are saved among ``store``'s
        intermediates, so that a resumed run reads them instead of passing over the volume again.

        Example:
            >>> import dask.array as da, tempfile
            >>> store = BlockStore.create(tempfile.mkdtemp() + "/v.ome.zarr", (1, 2, 2), chunks=(2, 2))
            >>> IntensityNorm.fit_cached(store, da.from_array(np.array([[0.0, 2.0], [4.0, 6.0]])), "mean_std").mean.tolist()
            3.0
            >>> IntensityNorm.fit_cached(store, da.zeros((2, 2)), "mean_std").mean.tolist()  # resumed: the saved statistics
            3.0
        """
        table = store.load_table("normalisation")
        if table is not None and str(table["mode"]) == mode:
            return cls(str(table["fitted"]), table["mean"], table["std"], clip=bool(table["clip"]))
        norm = cls.fit(array, mode, name=name, percentiles=percentiles)
        store.save_table("normalisation", mode=np.array(mode), fitted=np.array(norm.mode), mean=norm.mean, std=norm.std, clip=np.array(norm.clip))
        return norm

    def apply(self, block: np.ndarray, z0: int) -> np.ndarray:
        """Normalise ``block`` (float32), whose first slice is slice ``z0`` of the volume."""
        if self.mode == "none":
            return block
        if self.mode.endswith("_per_slice") and self.mean.ndim:
            sl = slice(z0, z0 + block.shape[0])
            shape = (-1,) + (1,) * (block.ndim - 1)
            mean, std = self.mean[sl].reshape(shape), self.std[sl].reshape(shape)
        else:
            mean, std = self.mean, self.std
        out = ((block - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)
        return np.clip(out, 0.0, 1.0) if self.clip else out


def load_weights(network: torch.nn.Module, ckpt_path: str | os.PathLike | None) -> torch.nn.Module:
    """Load a bundle checkpoint (a state dict, or ``{"model": state_dict, ...}`` as CheckpointSaver writes) into ``network``.

    Raises:
        FileNotFoundError: the checkpoint is missing.
        ValueError: it does not fit the network (names the keys).
    """
    if ckpt_path is None:
        return network
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not fit the network: {err}") from None
    return network


def _sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def large_inputs(path: str | os.PathLike) -> list[str]:
    """The volumes at ``path``: itself when it is a volume (a zarr store, an N5 container, an HDF5 or
    TIFF file, a folder of 2D slices), or each volume inside a folder of zarr stores / N5 containers /
    HDF5 / multi-page TIFF files.

    Example:
        >>> import tempfile, numpy as np, tifffile
        >>> folder = tempfile.mkdtemp()
        >>> for z in range(2):
        ...     tifffile.imwrite(f"{folder}/s{z}.tif", np.zeros((4, 4), np.uint8))
        >>> large_inputs(folder) == [folder]
        True
    """
    if "::" in str(path):  # a dataset inside a container: FILE.h5::raw, STORE.zarr::group, C.n5::volumes/raw
        container = str(path).split("::", 1)[0]
        if not os.path.exists(container):
            raise FileNotFoundError(f"input {container} does not exist")
        return [str(path)]
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"input {root} does not exist")
    name = str(root)
    if root.is_file() or name.lower().rstrip("/").endswith((".zarr", ".n5")) or ZarrReader()._accepts(name) or N5Reader()._accepts(name):
        return [name]
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    volumes = [p for p in entries if p.name.lower().endswith(LAZY_SUFFIXES)]
    slices = [p for p in entries if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES]
    if slices and all(p.suffix.lower() not in TIFF_SUFFIXES for p in slices):
        return [name]  # PNG / JPEG slices: one stack
    stacks = [p for p in volumes if p.is_dir() or p.suffix.lower() not in TIFF_SUFFIXES or _pages(p) > 1]
    if stacks:
        return [str(p) for p in stacks]
    if slices:
        return [name]  # single-page TIFF slices: one stack
    raise ValueError(f"{root}: holds no volume (zarr stores, N5 containers, HDF5 or TIFF files, or 2D slices)")


def _pages(path: Path) -> int:
    try:
        vol = open_volume(path)
    except (ImageReadError, ValueError):
        return 2  # let the run report it
    return vol.shape[0] if vol.ndim == 3 else 1


def output_name(path: str) -> str:
    """The output stem of an input volume: its name without ``.zarr``, ``.h5``, ``.tif`` ..., and
    the dataset of a container after an underscore.

    Example:
        >>> output_name("/d/v.ome.zarr"), output_name("/d/a.h5::volumes/raw"), output_name("/d/slices/")
        ('v', 'a_volumes_raw', 'slices')
    """
    path, _, dataset = str(path).partition("::")
    name = Path(path.rstrip("/")).name
    for suffix in sorted(LAZY_SUFFIXES + (".ome.zarr",), key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)] or name
            break
    dataset = dataset.strip("/").replace("/", "_")
    return f"{name}_{dataset}" if dataset else name


class _Task:
    """What every block needs, sent once to each worker."""

    def __init__(self, volume: LazyVolume, norm: IntensityNorm, window: BlockSlidingWindow | BlockCentreVoxel, store: BlockStore,
                 labels: str | None, threshold: float, label_channel: int, block_index: dict[str, int] | None = None) -> None:
        self.volume, self.norm, self.window, self.store = volume, norm, window, store
        self.labels, self.threshold, self.label_channel = labels, threshold, label_channel
        self.block_index = block_index or {}
        self._lut: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_lut": None}

    def raw(self) -> Any:
        """The work array of block-unique component ids (``labels="components"``)."""
        return zarr.open_array(self.store.work_path("components"), mode="r+", zarr_format=2)

    def read(self, box: tuple[tuple[int, int], ...]) -> np.ndarray:
        """The normalised input over ``box``: zeros past the border (sliding windows) or mirrored (centre voxels)."""
        if getattr(self.window, "padding", "constant") == "reflect":
            index = [reflect_indices(n, a, b) for (a, b), n in zip(box, self.volume.shape)]
            clipped = tuple((int(i.min()), int(i.max()) + 1) for i in index)
        else:
            clipped = tuple((max(a, 0), min(b, n)) for (a, b), n in zip(box, self.volume.shape))
        raw = self.volume[tuple(slice(a, b) for a, b in clipped)].astype(np.float32)
        data = self.norm.apply(raw, z0=clipped[0][0])
        if getattr(self.window, "padding", "constant") == "reflect":
            return data[np.ix_(*[i - a for i, (a, _) in zip(index, clipped)])]
        return read_box(data, tuple((a - c0, b - c0) for (a, b), (c0, _) in zip(box, clipped)))

    def __call__(self, network: torch.nn.Module, core: tuple[tuple[int, int], ...], block_id: str) -> str:
        box = self.window.input_box(core)
        prob = self.window(self.read(box), box, core, network).numpy()
        labels = None
        if self.labels == "threshold":
            labels = (prob[self.label_channel] >= self.threshold).astype(np.uint8)
        elif self.labels == "argmax":
            labels = prob.argmax(0).astype(np.uint8)
        elif self.labels == "components":  # pieces now; joined over the volume by the touch and relabel passes
            ids, table = local_components(prob[self.label_channel] > self.threshold, core, self.volume.shape, self.block_index[block_id])
            self.raw()[tuple(slice(a, b) for a, b in core)] = ids
            self.store.save_table(f"pieces_{block_id}", **table)
        self.store.write(core, prob, labels)
        self.store.mark_done(block_id)
        return block_id


def _run_task(task: _Task, network: torch.nn.Module, block_id: str, core: tuple[tuple[int, int], ...]) -> str:
    return task(network, core, block_id)


def _touch_task(task: _Task, block_id: str, core: tuple[tuple[int, int], ...]) -> str:
    task.store.save_table(f"touch_{block_id}", pairs=touching_pairs(task.raw(), core))
    task.store.mark_done(block_id, "touch")
    return block_id


def _relabel_task(task: _Task, block_id: str, core: tuple[tuple[int, int], ...]) -> str:
    if task._lut is None:
        table = task.store.load_table("components")
        if table is None:
            raise RuntimeError(f"{task.store.path}: the components were not merged before relabelling")
        task._lut = (table["keys"], table["values"])
    box = tuple(slice(a, b) for a, b in core)
    task.store.write_labels(core, relabel(task.raw()[box], *task._lut))
    task.store.mark_done(block_id, "relabel")
    return block_id


def block_items(shape: Sequence[int], block_shape: Sequence[int]) -> list[tuple[str, tuple[tuple[int, int], ...]]]:
    """``(id, core)`` of the blocks covering ``shape``; the id (``"i_j_k"``, block indices) names the block's marker.

    ``block_shape`` may have more axes than ``shape`` (its last ones apply).

    Example:
        >>> block_items((3, 10), (2, 8))
        [('0_0', ((0, 2), (0, 8))), ('0_1', ((0, 2), (8, 10))), ('1_0', ((2, 3), (0, 8))), ('1_1', ((2, 3), (8, 10)))]
    """
    if len(block_shape) < len(shape):
        raise ValueError(f"block_shape {tuple(block_shape)} has fewer axes than the volume {tuple(shape)}")
    block = tuple(int(b) for b in block_shape[len(block_shape) - len(shape) :])
    return [("_".join(str(a // s) for (a, _), s in zip(b.core, block)), b.core) for b in iter_blocks(tuple(shape), block, halo=0)]


def run_blocks(fn: Callable[..., Any], shared: Sequence[Any], todo: Sequence[tuple[str, Any]], client: Client | None, bar: Any = None) -> None:
    """``fn(*shared, block_id, core)`` for every ``(block_id, core)`` of ``todo``: here, or as tasks on
    ``client`` with each shared object sent once to every worker (not once per block).

    Args:
        fn: a module-level function (picklable); it writes its block and marks it done.
        shared: what every block needs (the network, the run's settings).
        todo: the blocks to compute.
        client: a Dask client, or ``None`` for this process.
        bar: a tqdm bar advanced per finished block.
    """
    if client is None or not todo:
        for block_id, core in todo:
            fn(*shared, block_id, core)
            if bar is not None:
                bar.update(1)
        return
    scattered = [client.scatter(obj, broadcast=True, hash=False) for obj in shared]
    for future in as_completed([client.submit(fn, *scattered, block_id, core, pure=False) for block_id, core in todo]):
        future.result()
        if bar is not None:
            bar.update(1)


def worker_environment(threads: int) -> dict[str, Any]:
    """The environment of LocalCluster workers: Dask's, less its ``MALLOC_TRIM_THRESHOLD_``, with ``threads`` for OpenMP.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc hand
    memory back after every large tensor; PyTorch's 3D convolutions then ran about 45% slower in a
    worker than in the main process on this project's machine (UNet3D windows, 2 threads). For
    an existing cluster (``--scheduler``), start the workers without that variable.

    Example:
        >>> "MALLOC_TRIM_THRESHOLD_" in worker_environment(2), worker_environment(2)["OMP_NUM_THREADS"]
        (False, 2)
    """
    env = {k: v for k, v in dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    env.update(OMP_NUM_THREADS=int(threads), MKL_NUM_THREADS=int(threads))
    return env


def dask_client(scheduler: str | None, n_workers: int = 1, threads_per_worker: int = 1, torch_threads: int | None = None) -> Client | None:
    """A Dask client: a new ``LocalCluster`` (``scheduler`` None or ``"local"``), an existing
    scheduler (``"tcp://host:port"``), or ``None`` for ``"synchronous"`` (run in this process).

    The workers' torch uses ``torch_threads`` threads (default cores / (workers x threads)); the
    dashboard link is logged and printed.
    """
    if scheduler == "synchronous":
        return None
    torch_threads = torch_threads or max(1, (os.cpu_count() or 1) // (int(n_workers) * int(threads_per_worker)))
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.WARNING)  # a bundle's logging.conf sets INFO everywhere
    if scheduler in (None, "local"):
        with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environment(torch_threads)}):
            cluster = LocalCluster(n_workers=int(n_workers), threads_per_worker=int(threads_per_worker), processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    client.run(torch.set_num_threads, torch_threads)
    logger.info("Dask dashboard: %s", client.dashboard_link)
    print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
    return client


def close_client(client: Client | None) -> None:
    """Close ``client`` and the LocalCluster it started (an existing cluster stays up)."""
    if client is None:
        return
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


class LargeVolumeInference:
    """A bundle network over volumes larger than memory (see the module docstring).

    Args:
        network: the bundle's network (``@network``); put in eval mode.
        ckpt_path: its weights (``@ckpt_path``), or ``None`` when already loaded.
        method: ``"sliding_window"`` (MONAI-style windows with Gaussian blending) or
            ``"centre_voxel"`` (dense centre-voxel classification, reflect padding; ``network`` a
            :class:`~cseg_monai.networks.CentreVoxelNet`; the window settings do not apply).
        roi_size: the sliding window (the bundle's ``patch_size``); 2 axes run slice by slice.
        overlap / mode / sigma_scale / sw_batch_size: as the bundle's ``SlidingWindowInferer``.
        n_transforms: test-time augmentation: 1, 2, 4, 8 dihedral transforms, as the bundle's
            ``DihedralTTAInferer``, or 16 flips and transposes of a 3D window, as ``FlipTransposeTTAInferer``.
        activation: ``"sigmoid"``, ``"softmax"`` or ``None``, applied per transform.
        tta_reduce: ``"mean"`` (default) or ``"max"`` over the transforms (sliding windows only).
        normalise: one of :data:`NORMALISATIONS` (the bundle's preprocessing).
        labels: ``"threshold"`` (channel ``label_channel`` >= ``threshold``), ``"argmax"``,
            ``"components"`` (connected components of channel ``label_channel`` > ``threshold``,
            26-connected, numbered 1..N as :func:`~cseg_monai.transforms.clefts.cleft_components`
            numbers them in memory, uint32; :mod:`~cseg_monai.postprocessing.block_components`),
            or ``None``.
        threshold / label_channel: for ``labels="threshold"`` and ``"components"``.
        min_size: for ``labels="components"``: smaller components (voxels) become background.
        percentiles: for ``normalise="percentiles"``: the range mapped to [0, 1] (default 1, 99).
        prob_dtype: ``"uint8"`` (probability x 255), ``"float16"`` or ``"float32"``.
        block_shape: the core each task computes, a multiple of ``chunks`` on every axis (the
            last block of an axis may be shorter). Choose it for RAM: see the module docstring.
        chunks: the output's chunk shape (``(Z, Y, X)``), for the next reader.
        scheduler: ``None`` (a LocalCluster), ``"synchronous"`` (this process), or a scheduler address.
        n_workers / threads_per_worker: of the LocalCluster. Each worker thread runs one block at
            a time (blocks in flight = workers x threads, default 1 thread), and torch in each
            worker uses cores / (workers x threads) threads.
        overwrite: replace an output written with other arguments.
        progress: a bar over the blocks (default: when stderr is a terminal).
        device: where the network runs.
        dense_block_size: for ``"centre_voxel"``: the dense inferer's output tile (the bundle's ``block_size``).

    Raises:
        ValueError: bad settings, before anything is read or written.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        ckpt_path: str | os.PathLike | None = None,
        method: str = "sliding_window",
        roi_size: Sequence[int] = (256, 256),
        overlap: float = 0.25,
        mode: str = "gaussian",
        sigma_scale: float = 0.125,
        sw_batch_size: int = 4,
        n_transforms: int = 1,
        activation: str | None = "sigmoid",
        normalise: str = "mean_std_per_slice",
        labels: str | None = "threshold",
        threshold: float = 0.5,
        label_channel: int = 0,
        prob_dtype: str = "uint8",
        block_shape: Sequence[int] = (8, 1024, 1024),
        chunks: Sequence[int] = (8, 256, 256),
        scheduler: str | None = None,
        n_workers: int = 1,
        threads_per_worker: int | None = None,
        overwrite: bool = False,
        progress: bool | None = None,
        device: str | torch.device = "cpu",
        dense_block_size: int | Sequence[int] | None = 256,
        min_size: int = 0,
        percentiles: Sequence[float] = (1.0, 99.0),
        tta_reduce: str = "mean",
    ) -> None:
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if labels not in LABELS:
            raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
        if prob_dtype not in PROB_DTYPES:
            raise ValueError(f"prob_dtype must be one of {list(PROB_DTYPES)}, got {prob_dtype!r}")
        if int(min_size) < 0:
            raise ValueError(f"min_size must be >= 0 voxels, got {min_size}")
        if labels in ("threshold", "components") and not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        self.percentiles = tuple(float(p) for p in percentiles)
        if len(self.percentiles) != 2 or not 0.0 <= self.percentiles[0] < self.percentiles[1] <= 100.0:
            raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {tuple(percentiles)}")
        self.min_size = int(min_size)
        self.block_shape, self.chunks = tuple(int(b) for b in block_shape), tuple(int(c) for c in chunks)
        if len(self.block_shape) != len(self.chunks) or any(c < 1 or b < 1 or b % c for b, c in zip(self.block_shape, self.chunks)):
            raise ValueError(f"block_shape {self.block_shape} must be a positive multiple of chunks {self.chunks} on every axis")
        if int(n_workers) < 1 or (threads_per_worker is not None and int(threads_per_worker) < 1):
            raise ValueError(f"n_workers ({n_workers}) and threads_per_worker ({threads_per_worker}) must be >= 1")
        self.window_settings = {
            "roi_size": tuple(int(r) for r in roi_size),
            "overlap": float(overlap),
            "mode": mode,
            "sigma_scale": float(sigma_scale),
            "n_transforms": int(n_transforms),
            "activation": activation,
            "sw_batch_size": int(sw_batch_size),
        }
        if tta_reduce != "mean":  # recorded only when set, so that older outputs keep their fingerprint
            self.window_settings["reduce"] = tta_reduce
        self.method = method
        self.network = load_weights(network, ckpt_path).cpu().eval()
        if method == "centre_voxel":
            if tta_reduce != "mean":
                raise ValueError(f"tta_reduce {tta_reduce!r}: dense centre-voxel inference averages its transforms (tta_reduce 'mean')")
            self.window_settings = {"method": method, "n_transforms": int(n_transforms), "activation": activation, "dense_block_size": dense_block_size}
            BlockCentreVoxel((1 << 16,) * self.network.spatial_dims, self.network, n_transforms, activation, dense_block_size=dense_block_size)
        else:
            BlockSlidingWindow((1 << 16,) * len(self.window_settings["roi_size"]), **self.window_settings)  # checks the settings
        self.ckpt = None if ckpt_path is None else {"file": Path(ckpt_path).name, "sha256": _sha256(ckpt_path)}
        self.normalise, self.labels = normalise, labels
        self.threshold, self.label_channel, self.prob_dtype = float(threshold), int(label_channel), prob_dtype
        self.scheduler, self.n_workers = scheduler, int(n_workers)
        self.threads_per_worker = int(threads_per_worker) if threads_per_worker else 1
        self.torch_threads = max(1, (os.cpu_count() or 1) // (self.n_workers * self.threads_per_worker))
        self.overwrite = bool(overwrite)
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.device = torch.device(device)

    # -- one volume ---------------------------------------------------------------------
    def _arguments(self, volume: LazyVolume) -> dict[str, Any]:
        return {
            "input": {"path": os.path.abspath(volume.path), "dataset": volume.dataset, "token": volume.token()},
            "weights": self.ckpt,
            "window": self.window_settings,
            "normalise": [self.normalise, self.percentiles] if self.normalise == "percentiles" else self.normalise,
            "labels": [self.labels, self.threshold, self.label_channel] + ([self.min_size] if self.labels == "components" else []),
            "block_shape": self.block_shape,
        }

    def _blocks(self, shape: tuple[int, ...], block_shape: Sequence[int] | None = None) -> list[tuple[str, tuple[tuple[int, int], ...]]]:
        """``(id, core)`` of the blocks of ``block_shape`` (default ``self.block_shape``) covering ``shape``."""
        return block_items(shape, block_shape or self.block_shape)

    def run_one(self, path: str | os.PathLike, output: str | os.PathLike, client: Client | None = None) -> dict[str, Any]:
        """Infer one volume into the OME-Zarr store ``output``; resume it when interrupted before.

        Returns:
            ``{"output", "shape", "blocks", "skipped", "seconds", "vox_per_s", "spacing"}``.
        """
        start = time.perf_counter()
        self._timings: dict[str, float] = {}
        volume = open_volume(path)
        if self.method == "centre_voxel":
            window: BlockSlidingWindow | BlockCentreVoxel = BlockCentreVoxel(
                volume.shape, self.network, self.window_settings["n_transforms"], self.window_settings["activation"], self.device,
                dense_block_size=self.window_settings["dense_block_size"],
            )
            channels = int(self.network.n_classes)
        else:
            window = BlockSlidingWindow(volume.shape, device=self.device, **self.window_settings)
            with torch.no_grad():
                probe = self.network(torch.zeros((1, 1) + self.window_settings["roi_size"], device=self.device))
            channels = int(probe.shape[1])
        if self.labels in ("threshold", "components") and not 0 <= self.label_channel < channels:
            raise ValueError(f"label_channel {self.label_channel} is not one of the network's {channels} output channels")
        spatial = volume.shape
        chunks = tuple(min(c, n) for c, n in zip(self.chunks[-len(spatial) :], spatial))
        store = BlockStore.create(
            output,
            (channels,) + spatial,
            chunks=chunks,
            prob_dtype=self.prob_dtype,
            labels_dtype={"components": "uint32", None: None}.get(self.labels, "uint8"),
            spacing=volume.spacing,
            spacing_unit=volume.spacing_unit,
            arguments=self._arguments(volume),
            overwrite=self.overwrite,
        )
        blocks = self._blocks(spatial)
        record = {"output": store.final, "shape": list(spatial), "blocks": len(blocks), "spacing": volume.spacing}
        if store.complete:
            logger.info("%s is complete (same arguments): nothing to do", store.final)
            return {**store.results, **record, "skipped": len(blocks), "seconds": 0.0, "vox_per_s": None}
        done = store.done_blocks()
        todo = [(i, core) for i, core in blocks if i not in done]
        norm = IntensityNorm.fit_cached(store, volume.to_dask(), self.normalise, volume.path, self.percentiles) if todo else IntensityNorm("none")
        task = _Task(volume, norm, window, store, self.labels, self.threshold, self.label_channel, {i: k for k, (i, _) in enumerate(blocks)})
        if self.labels == "components":
            store.work_array("components", spatial, chunks, "uint64")  # read back with a 1-voxel rim: small chunks
        bar = tqdm(total=len(blocks), initial=len(blocks) - len(todo), desc=Path(volume.path).name, unit="block", disable=not self.progress)
        try:
            run_blocks(_run_task, [task, self.network.to(self.device)], todo, client, bar)
        finally:
            bar.close()
        if self.labels == "components":
            record["components"] = self._components(store, task, blocks, client)
            store.save_results(components=record["components"])
        final = store.finish()
        seconds = time.perf_counter() - start
        done_vox = sum(int(np.prod([b - a for a, b in core])) for _, core in todo)
        return {**record, "output": final, "skipped": len(blocks) - len(todo), "seconds": round(seconds, 3),
                "vox_per_s": round(done_vox / seconds, 1) if seconds > 0 else None}

    def _components(self, store: BlockStore, task: _Task, blocks: list[tuple[str, tuple[tuple[int, int], ...]]], client: Client | None) -> int:
        """Join the blocks' component pieces and write the labels (passes ``touch`` and ``relabel``); the component count."""
        self._pass(store, "touch", blocks, _touch_task, [task], client)
        table = store.load_table("components")
        if table is None:
            pieces, pairs = [], []
            for block_id, _ in blocks:
                piece, touch = store.load_table(f"pieces_{block_id}"), store.load_table(f"touch_{block_id}")
                if piece is None or touch is None:
                    raise RuntimeError(f"{store.path}: block {block_id} was marked done but its component tables are missing")
                pieces.append(piece)
                pairs.append(touch["pairs"])
            keys, values = merge_components(pieces, np.concatenate(pairs), self.min_size)
            store.save_table("components", keys=keys, values=values)
            table = {"keys": keys, "values": values}
        self._pass(store, "relabel", blocks, _relabel_task, [task], client)
        return int(table["values"].max()) if len(table["values"]) else 0

    def _pass(self, store: BlockStore, name: str, items: list[tuple[str, tuple[tuple[int, int], ...]]], fn: Callable[..., str],
              shared: Sequence[Any], client: Client | None) -> int:  # fmt: skip
        """Run ``fn(*shared, block_id, core)`` for every block not yet done in pass ``name``; returns how many ran."""
        start = time.perf_counter()
        done = store.done_blocks(name)
        todo = [(i, core) for i, core in items if i not in done]
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=name, unit="block", disable=not self.progress)
        try:
            run_blocks(fn, shared, todo, client, bar)
        finally:
            bar.close()
        self._timings[name] = round(time.perf_counter() - start, 3)
        return len(todo)

    # -- many volumes, one cluster ------------------------------------------------------
    def client(self) -> Client | None:
        """The Dask client of the configured scheduler (``None`` for ``"synchronous"``)."""
        return dask_client(self.scheduler, self.n_workers, self.threads_per_worker, self.torch_threads)

    def run(self, inputs: str | os.PathLike | Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> dict[str, Any]:
        """Infer every volume of ``inputs`` into ``output_dir/NAME.ome.zarr``; a failing volume is reported and skipped.

        Args:
            inputs: a volume, a folder of volumes (:func:`large_inputs`), or a list of either.
            output_dir: the output folder (receives ``run_summary.json``).

        Returns:
            The run summary (one record per volume).

        Raises:
            FolderRunError: after all volumes were tried, naming each one that failed.
        """
        items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        paths = [p for item in items for p in large_inputs(item)]
        report = FileReport(output_dir, total=len(paths), progress=False, desc="volumes")
        client = self.client() if paths else None
        try:
            for path in paths:
                with report.item(path) as record:
                    record.update(self.run_one(path, Path(output_dir) / f"{output_name(str(path))}.ome.zarr", client))
        finally:
            close_client(client)
        return report.finish()
