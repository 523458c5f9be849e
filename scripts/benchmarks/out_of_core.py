#!/usr/bin/env python
"""Out-of-core inference (``inference_large.json``) of each bundle: peak memory and throughput.

A uint8 zarr volume made of tiled nuclei phantoms goes through (a) the membrane model slice by
slice, (b) the 3D instance model with instances, (c) the dense organelle model on a slab of it,
each as its own ``python -m monai.bundle run`` process (the bundle's ``inference.json`` +
``inference_large.json``, default settings but ``tta_transforms`` / ``block_shape`` where
``--set`` changes them). Per path:

- ``peak_rss_mb``: the largest sum of resident memory over the run's whole process tree (the
  bundle process and its Dask workers), polled every 0.2 s with psutil;
- ``vox_per_s``: volume voxels / wall time of the out-of-core run (every pass, start-up included);
  ``compute_vox_per_s`` the same without process and cluster start-up (the volume's own seconds
  in ``run_summary.json``), against ``in_memory_compute_vox_per_s`` (Ignite's engine time of the
  in-memory run): ``compute_throughput_ratio``, the fair comparison on crops small enough for
  start-up to dominate;
- ``in_memory_vox_per_s``: the same model through ``inference.json`` on a crop held in memory
  (``--crop`` for the instances; for the 2D bundles as many voxels in whole slices, given as
  one file per slice, so that both paths lay the same windows on a slice), in the same script run;
- ``workers_1_vox_per_s`` / ``workers_2_vox_per_s``: out-of-core on that crop with one worker of
  2 threads and with two workers of one thread (a ``LocalCluster`` each);
- instances: ``ids_equal_in_memory``: the crop's ids from both paths, compared as partitions
  (identical up to numbering), the voxels where they disagree (each out-of-core id mapped to the
  in-memory id it overlaps most) and F1 at IoU 0.5 between them.

Every path's record is written to the JSON as soon as it is measured; a rerun skips the paths
already in the file (``--redo`` measures them again), so the benchmark can run in parts.

Usage::

    .venv/bin/python scripts/benchmarks/out_of_core.py --quick --json scripts/benchmarks/results/out_of_core_quick.json
    .venv/bin/python scripts/benchmarks/out_of_core.py --json scripts/benchmarks/results/out_of_core.json   # 1024^3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import tifffile
import zarr

from cseg_monai.data.nuclei_phantom import make_nuclei_phantom
from cseg_monai.data.writers import atomic_path
from cseg_monai.metrics.instances import instance_scores
from cseg_monai.workflows import bundle_command

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = {
    "membrane": "isbi2012_em_membrane_segmentation",
    "instances": "cell_instance_boundary_segmentation_3d",
    "organelles": "fibsem_organelle_centervoxel_segmentation",
}
TILE = (32, 256, 256)


def write_volume(path: Path, shape: tuple[int, int, int], seeds: int = 4) -> None:
    """A uint8 zarr of ``shape`` tiled with ``seeds`` different nuclei phantoms, written tile by tile."""
    tiles = [make_nuclei_phantom(TILE, n_nuclei=60, radius_range=(6.0, 10.0), seed=s)[0] for s in range(seeds)]
    z = zarr.open_array(str(path), mode="w", shape=shape, chunks=(min(32, shape[0]), 256, 256), dtype="u1", zarr_format=2)
    k = 0
    for z0 in range(0, shape[0], TILE[0]):
        for y0 in range(0, shape[1], TILE[1]):
            for x0 in range(0, shape[2], TILE[2]):
                box = tuple(slice(a, min(a + t, n)) for a, t, n in zip((z0, y0, x0), TILE, shape))
                z[box] = tiles[k % seeds][tuple(slice(0, s.stop - s.start) for s in box)]
                k += 1


def run_tree(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd``; its wall time and the peak summed RSS of its process tree."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        peak = 0
        stop = threading.Event()

        def poll() -> None:
            nonlocal peak
            root = psutil.Process(proc.pid)
            while not stop.is_set():
                try:
                    procs = [root, *root.children(recursive=True)]
                    total = 0
                    for p in procs:
                        try:
                            total += p.memory_info().rss
                        except psutil.Error:
                            pass
                    peak = max(peak, total)
                except psutil.Error:
                    pass
                time.sleep(0.2)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        code = proc.wait()
        stop.set()
        watcher.join()
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({code}); see {log}:\n" + log.read_text()[-3000:])
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak / 2**20, 1)}


def large(name: str, src: Path, out: Path, log: Path, **override: Any) -> dict[str, Any]:
    cmd = bundle_command(BUNDLES[name], ["inference.json", "inference_large.json"], "run", dataset_dir=str(src), output_dir=str(out),
                         progress_bar=False, **override)  # fmt: skip
    return run_tree(cmd, log)


def in_memory(name: str, folder: Path, out: Path, log: Path, **override: Any) -> dict[str, Any]:
    cmd = bundle_command(BUNDLES[name], ["inference.json"], "run", dataset_dir=str(folder), output_dir=str(out), progress_bar=False, **override)
    return run_tree(cmd, log)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images are the same objects up to numbering (background 0 in both)."""
    if a.shape != b.shape or not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def disagreeing_voxels(ours: np.ndarray, theirs: np.ndarray) -> int:
    """Voxels where ``ours``, each id mapped to the ``theirs`` id it overlaps most, differs from ``theirs``."""
    pairs, counts = np.unique(np.stack([ours.ravel(), theirs.ravel()]), axis=1, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for (a, b), n in zip(pairs.T.tolist(), counts.tolist()):
        if a not in best or n > best[a][1]:
            best[a] = (b, n)
    agree = sum(n for a, (b, n) in best.items() if a == 0 and b == 0 or a != 0 and b != 0)
    return int(ours.size - agree)


def compute_rates(record: dict[str, Any], name: str, work: Path) -> dict[str, Any]:
    """Rates without process start-up, from the runs' own records: the in-memory engine time (the sum of
    Ignite's "Engine run finished" times in its log) and the out-of-core time of the volume
    (``run_summary.json``); their ratio is ``compute_throughput_ratio``."""
    import re

    engine = sum(
        int(h) * 3600 + int(m) * 60 + float(sec)
        for h, m, sec in re.findall(r"Engine run finished\. Time taken: (\d+):(\d+):([\d.]+)", (work / f"{name}_mem.log").read_text())
    )
    n_crop = int(np.prod(record["crop_shape"]))
    volume_seconds = json.loads((work / f"{name}_big" / "run_summary.json").read_text())["succeeded"][0]["seconds"]
    out = {
        "in_memory_engine_seconds": round(engine, 2),
        "in_memory_compute_vox_per_s": round(n_crop / engine, 1),
        "volume_seconds": round(volume_seconds, 2),
        "compute_vox_per_s": round(int(np.prod(record["volume_shape"])) / volume_seconds, 1),
    }
    out["compute_throughput_ratio"] = round(out["compute_vox_per_s"] / out["in_memory_compute_vox_per_s"], 3)
    if name == "instances":  # the zoom differs between the volume and the crop: compare per voxel of the model's grid
        big_model = np.prod(json.loads((work / f"{name}_big" / "run_summary.json").read_text())["succeeded"][0]["model_shape"])
        crop_model = np.prod(json.loads((work / f"{name}_w1" / "run_summary.json").read_text())["succeeded"][0]["model_shape"])  # the crop's plan, as in memory
        out["compute_model_vox_per_s"] = round(float(big_model) / volume_seconds, 1)
        out["in_memory_compute_model_vox_per_s"] = round(float(crop_model) / engine, 1)
        out["compute_model_throughput_ratio"] = round(out["compute_model_vox_per_s"] / out["in_memory_compute_model_vox_per_s"], 3)
    return out


def measure(name: str, volume: Path, crop_shape: tuple[int, ...], work: Path, extra: dict[str, Any]) -> dict[str, Any]:
    shape = zarr.open_array(str(volume), mode="r").shape
    n_vox = int(np.prod(shape))
    print(f"[{name}] out of core on {shape} ...", flush=True)
    big = large(name, volume, work / f"{name}_big", work / f"{name}_big.log", **extra)
    record: dict[str, Any] = {"volume_shape": list(shape), **big, "vox_per_s": round(n_vox / big["seconds"], 1), "settings": extra}
    # the crop: in memory, and out of core with 1 and 2 workers
    crop = zarr.open_array(str(volume), mode="r")[tuple(slice(0, c) for c in crop_shape)]
    folder = work / f"{name}_crop"
    folder.mkdir(exist_ok=True)
    if name == "instances":
        tifffile.imwrite(folder / "crop.tif", crop, photometric="minisblack")
    else:  # the 2D bundles' inference.json takes images: one file per slice
        for z, plane in enumerate(crop):
            tifffile.imwrite(folder / f"crop_{z:04d}.tif", plane, photometric="minisblack")
    crop_zarr = work / f"{name}_crop.zarr"
    zarr.open_array(str(crop_zarr), mode="w", shape=crop.shape, chunks=(min(32, crop.shape[0]), 256, 256), dtype="u1", zarr_format=2)[:] = crop
    n_crop = int(crop.size)
    print(f"[{name}] in memory on {crop.shape} ...", flush=True)
    mem = in_memory(name, folder, work / f"{name}_mem", work / f"{name}_mem.log", **{k: v for k, v in extra.items() if k == "tta_transforms"})
    record.update(crop_shape=list(crop.shape), in_memory_seconds=mem["seconds"], in_memory_peak_rss_mb=mem["peak_rss_mb"],
                  in_memory_vox_per_s=round(n_crop / mem["seconds"], 1))  # fmt: skip
    for workers, threads in ((1, 2), (2, 1)):
        print(f"[{name}] out of core on the crop, {workers} worker(s) ...", flush=True)
        same = {"estimate_box": list(crop.shape)} if name == "instances" else {}  # objects measured on the whole crop, as in memory
        run = large(name, crop_zarr, work / f"{name}_w{workers}", work / f"{name}_w{workers}.log", n_workers=workers, threads_per_worker=threads,
                    **same, **{k: v for k, v in extra.items() if k != "block_shape"})  # fmt: skip
        record[f"workers_{workers}_vox_per_s"] = round(n_crop / run["seconds"], 1)
        record[f"workers_{workers}_peak_rss_mb"] = run["peak_rss_mb"]
    record["throughput_ratio"] = round(record["vox_per_s"] / record["in_memory_vox_per_s"], 3)
    record.update(compute_rates(record, name, work))
    if name == "instances":
        ours = zarr.open_group(str(work / f"{name}_w1" / "instances_crop.ome.zarr"), mode="r")["labels/segmentation/0"][:].astype(np.int64)
        theirs = tifffile.imread(work / f"{name}_mem" / "crop_labels.tif").astype(np.int64)
        record["ids_equal_in_memory"] = same_partition(ours, theirs)
        record["voxels_disagreeing"] = disagreeing_voxels(ours, theirs)
        record["voxels_disagreeing_fraction"] = round(record["voxels_disagreeing"] / ours.size, 6)
        record["f1_iou50_vs_in_memory"] = round(instance_scores(theirs, ours, thresholds=(0.5,))["f1"][0], 4)
        record["instances_in_memory"], record["instances_out_of_core"] = int(theirs.max()), int(ours.max())
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="result file (paths already in it are skipped)")
    parser.add_argument("--quick", action="store_true", help="256 x 1024 x 1024 (a, b) and 16 x 512 x 512 (c) instead of 1024^3 and 64 x 1024^2")
    parser.add_argument("--shape", type=int, nargs=3, help="override the volume shape of (a) and (b)")
    parser.add_argument("--slab", type=int, nargs=3, help="override the organelle slab shape (c)")
    parser.add_argument("--crop", type=int, nargs=3, default=None, help="the in-memory crop (default 256^3, clipped to the volume)")
    parser.add_argument("--paths", nargs="+", default=list(BUNDLES), choices=list(BUNDLES))
    parser.add_argument("--set", nargs="*", default=[], metavar="PATH:KEY=VALUE", help="config overrides, e.g. membrane:tta_transforms=1")
    parser.add_argument("--work", default=None, help="scratch folder (default a temporary one)")
    parser.add_argument("--redo", action="store_true", help="measure paths already in the JSON again")
    parser.add_argument("--rates", action="store_true", help="only add the start-up-free rates to the paths in the JSON, from --work's logs")
    args = parser.parse_args()
    shape = tuple(args.shape) if args.shape else ((256, 1024, 1024) if args.quick else (1024, 1024, 1024))
    slab = tuple(args.slab) if args.slab else ((16, 512, 512) if args.quick else (64, 1024, 1024))
    result_path = Path(args.json)
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    result.setdefault("paths", {})
    if args.rates:
        work = Path(args.work or ".")
        for name, record in result["paths"].items():
            record.update(compute_rates(record, name, work))
        with atomic_path(result_path) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
        return
    result.update(
        volume_shape=list(shape), slab_shape=list(slab), quick=bool(args.quick),
        machine={"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "cpu": platform.processor() or platform.machine()},
    )  # fmt: skip
    extra: dict[str, dict[str, Any]] = {k: {} for k in BUNDLES}
    for item in args.set:
        where, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        extra[where][key] = json.loads(value)
    work = Path(args.work or tempfile.mkdtemp(prefix="out_of_core_"))
    work.mkdir(parents=True, exist_ok=True)
    volumes = {}
    for label, s in (("volume", shape), ("slab", slab)):
        path = work / f"{label}_{'x'.join(map(str, s))}.zarr"
        if not (path / ".zarray").is_file():
            print(f"writing {path} ...", flush=True)
            write_volume(path, s)
        volumes[label] = path
    for name in args.paths:
        if name in result["paths"] and not args.redo:
            print(f"[{name}] already measured: skipped (--redo measures it again)")
            continue
        volume = volumes["slab" if name == "organelles" else "volume"]
        vol_shape = zarr.open_array(str(volume), mode="r").shape
        crop = tuple(min(c, n) for c, n in zip(args.crop or (256, 256, 256), vol_shape))
        if name != "instances":  # 2D bundles: whole slices (windows of the same layout), as many voxels
            crop = (max(1, min(vol_shape[0], int(np.prod(crop)) // (vol_shape[1] * vol_shape[2]))), *vol_shape[1:])
        record = measure(name, volume, crop, work, extra[name])
        record["command"] = " ".join([".venv/bin/python", "scripts/benchmarks/out_of_core.py", *sys.argv[1:]])
        result["paths"][name] = record
        print(json.dumps({name: record}, indent=1), flush=True)
        with atomic_path(result_path) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
