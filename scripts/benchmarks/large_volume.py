#!/usr/bin/env python
"""A real-sized 2-channel stack through the instance bundle: peak memory, time and accuracy.

The input is what the C. elegans germline users have: an ImageJ hyperstack of 2 channels x 25 x
1024 x 1024, uint16 (100 MB), no voxel size in the file. Channel 0 holds nuclei (4 x 4 tiles of
``make_nuclei_phantom`` 25 x 256 x 256, each tile its own seed), channel 1 a smooth second stain
that the nuclei model must not see. The bundle's default ``inference.json`` (the generalist)
segments channel 0 (``--channel 0``): the objects are measured in the image (no voxel size),
rescaled, segmented by the sliding window and the multicut, and written back on the input grid.

The run is its own process (``python -m monai.bundle run``); its peak resident memory is
``ru_maxrss`` of that child (Python, torch, the model, the volume and every copy the run makes;
``earlier_children_peak_gb`` is the largest earlier child of this script, which ``ru_maxrss``
would report instead were it larger).
Accuracy: F1 at IoU 0.5 against the phantom's own instances.

Usage::

    .venv/bin/python scripts/benchmarks/large_volume.py --json scripts/benchmarks/results/large_volume.json
    .venv/bin/python scripts/benchmarks/large_volume.py --tiles 1 --json /tmp/large_volume_quick.json  # 25 x 256 x 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from cseg_monai.data.nuclei_phantom import make_nuclei_phantom
from cseg_monai.data.writers import atomic_path
from cseg_monai.metrics.instances import instance_scores
from cseg_monai.workflows import bundle_command

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "cell_instance_boundary_segmentation_3d"
TILE = (25, 256, 256)


def make_stack(tiles: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(stack (2, Z, Y, X) uint16, nuclei labels (Z, Y, X))`` of ``tiles x tiles`` phantom tiles."""
    z, h, w = TILE
    nuclei = np.zeros((z, tiles * h, tiles * w), np.uint16)
    labels = np.zeros(nuclei.shape, np.int64)
    next_id = 0
    for i in range(tiles):
        for j in range(tiles):
            image, lab = make_nuclei_phantom(TILE, n_nuclei=70, radius_range=(8.0, 13.0), seed=seed + i * tiles + j, photons=40.0)
            nuclei[:, i * h : (i + 1) * h, j * w : (j + 1) * w] = image.astype(np.uint16) * 200 + 300
            lab = lab.astype(np.int64)
            labels[:, i * h : (i + 1) * h, j * w : (j + 1) * w] = np.where(lab > 0, lab + next_id, 0)
            next_id += int(lab.max())
    rng = np.random.default_rng(seed + 1)
    other = ndimage.gaussian_filter(rng.random(nuclei.shape, dtype=np.float32), (1, 12, 12))
    other = ((other - other.min()) / max(float(np.ptp(other)), 1e-6) * 40000 + 1000).astype(np.uint16)
    return np.stack([nuclei, other]), labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="results file")
    parser.add_argument("--tiles", type=int, default=4, help="tiles per side (4: 1024 x 1024 planes)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.tiles < 1:
        parser.error("--tiles must be >= 1")
    work = Path(args.work or tempfile.mkdtemp(prefix="cseg_large_"))
    (work / "in").mkdir(parents=True, exist_ok=True)
    stack, truth = make_stack(args.tiles)
    path = work / "in" / "germline_like.tif"
    tifffile.imwrite(path, np.ascontiguousarray(np.moveaxis(stack, 0, 1)), imagej=True, metadata={"axes": "ZCYX"})
    print(f"input {path}: {stack.shape} {stack.dtype}, {path.stat().st_size / 2**20:.1f} MB, {int(truth.max())} nuclei", flush=True)
    out = work / "out"
    cmd = bundle_command(BUNDLE, ["inference.json"], "run",
                         extra_args=["--datalist", repr([{"image": str(path)}]), "--channel", "0", "--output_dir", str(out),
                                     "--progress_bar", "False"])  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - began
    if proc.returncode:
        print(proc.stderr[-4000:], file=sys.stderr)
        return proc.returncode
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    labels = tifffile.imread(out / "germline_like_labels.tif")
    summary = json.loads((out / "run_summary.json").read_text())["succeeded"][0]
    scores = instance_scores(truth, labels.astype(np.int64), thresholds=(0.5, 0.75))
    result = {
        "command": " ".join(["scripts/benchmarks/large_volume.py", *(argv if argv is not None else sys.argv[1:])]),
        "input_shape": list(stack.shape), "input_dtype": str(stack.dtype), "input_mb": round(path.stat().st_size / 2**20, 1),
        "peak_rss_gb": round(peak_kb / 2**20, 2), "earlier_children_peak_gb": round(before / 2**20, 3),
        "seconds": round(seconds, 1), "n_true": int(scores["n_true"]), "n_pred": int(scores["n_pred"]),
        "f1_iou50": round(float(scores["f1"][0]), 4), "f1_iou75": round(float(scores["f1"][1]), 4),
        "scale": {k: summary.get(k) for k in ("spacing_source", "object_size_source", "object_chord", "object_zoom")},
        "labels_shape": list(labels.shape),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
