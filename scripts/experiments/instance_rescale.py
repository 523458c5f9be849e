#!/usr/bin/env python
"""What the voxel-size rescaling buys: shipped instance models on inputs at other voxel sizes.

For each case the volumes are written as a user would have them (ImageJ TIFF with the voxel
size in the file, or with none), the bundle's default ``inference.json`` (plus an inference
override where named) runs on them through ``python -m monai.bundle``, and the labels are
scored against the ground truth at IoU 0.5 and 0.75. Each case runs twice: as shipped (the
input resampled to the model's voxel size, ``RescaleToSpacingd``) and with the rescaling off
(``--model_spacing '$None'``), the behaviour before it existed.

Cases (none is data the model was trained on):

* ``nuclei_val``: the default nuclei model's own validation crop (PlantSeg nuclei z 70-99, it
  chose the checkpoint) at the file's voxel size: the rescaling must change nothing here.
* ``nuclei_val_coarse_xy``: the same crop with a 2x coarser pixel (Y, X block means; labels
  by nearest neighbour), spacing 0.284 x 0.254 x 0.254 um in the file.
* ``nuclei_val_coarse_zyx``: 2x coarser on every axis.
* ``ctc_by_default_model``: CTC Fluo-N3DH-CHO time points 12-14 (never seen by the default
  model), files without a voxel size, with ``--spacing 1.0 0.202 0.202`` as a user who knows
  the microscope would give it.

Usage::

    .venv/bin/python scripts/experiments/instance_rescale.py --json scripts/experiments/results/instance_rescale.json

Results are written after every case, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from skimage.segmentation import relabel_sequential

from cseg_monai.common import data_root
from cseg_monai.data.datasets.instances import SPLITS, datalist, load_item
from cseg_monai.metrics.instances import instance_scores
from cseg_monai.workflows import bundle_command

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "cell_instance_boundary_segmentation_3d"


def _write(folder: Path, stem: str, image: np.ndarray, spacing) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if spacing is not None:
        kwargs = {"imagej": True, "resolution": (1 / spacing[2], 1 / spacing[1]), "metadata": {"spacing": spacing[0], "unit": "um", "axes": "ZYX"}}
    tifffile.imwrite(folder / f"{stem}.tif", image, **kwargs)


def _block_mean(a: np.ndarray, f: tuple[int, int, int]) -> np.ndarray:
    z, y, x = (s // k * k for s, k in zip(a.shape, f))
    a = a[:z, :y, :x].astype(np.float32)
    return a.reshape(z // f[0], f[0], y // f[1], f[1], x // f[2], f[2]).mean(axis=(1, 3, 5))


def _cases(work: Path) -> dict:
    """case -> (input folder, truths by stem, configs, extra args)."""
    root = data_root()
    image, truth, spacing = load_item(datalist("plantseg_nuclei", root, None)[0])
    z0, z1 = SPLITS["plantseg_nuclei"]["val"]["z"]
    img, lab = image[0, z0:z1], truth[z0:z1]
    cases = {}
    for name, f in (("nuclei_val", (1, 1, 1)), ("nuclei_val_coarse_xy", (1, 2, 2)), ("nuclei_val_coarse_zyx", (2, 2, 2))):
        small = img if f == (1, 1, 1) else _block_mean(img, f).astype(img.dtype)
        small_lab = lab[:: f[0], :: f[1], :: f[2]][: small.shape[0], : small.shape[1], : small.shape[2]]
        folder = work / name
        _write(folder, "crop", small, [s * k for s, k in zip(spacing, f)])
        cases[name] = (folder, {"crop": small_lab}, ["inference.json"], [])
    folder, truths = work / "ctc", {}
    for item in datalist("ctc_cho", root, "val"):
        im, lb, _ = load_item(item)
        stem = f"t{item['t']:02d}" if "t" in item else f"t{len(truths):02d}"
        _write(folder, stem, im[0], None)
        truths[stem] = lb
    cases["ctc_by_default_model"] = (folder, truths, ["inference.json"], ["--spacing", "[1.0, 0.202, 0.202]"])
    return cases


def _score(out: Path, truths: dict) -> dict:
    per = {}
    tp = {0.5: [0, 0, 0], 0.75: [0, 0, 0]}
    for stem, truth in truths.items():
        pred = tifffile.imread(out / f"{stem}_labels.tif").astype(np.int64)
        if pred.shape != truth.shape:
            raise ValueError(f"{stem}: labels {pred.shape} differ from the ground truth {truth.shape}")
        s = instance_scores(relabel_sequential(truth.astype(np.int64))[0], relabel_sequential(pred)[0], thresholds=(0.5, 0.75))
        per[stem] = {"f1_iou50": s["f1"][0], "f1_iou75": s["f1"][1], "n_true": s["n_true"], "n_pred": s["n_pred"]}
        for i, t in enumerate((0.5, 0.75)):
            tp[t][0] += s["tp"][i]
            tp[t][1] += s["fp"][i]
            tp[t][2] += s["fn"][i]
    pooled = {}
    for t, (a, b, c) in tp.items():
        key = "iou50" if t == 0.5 else "iou75"
        pooled[f"f1_{key}"] = 2 * a / max(2 * a + b + c, 1)
        pooled[f"recall_{key}"] = a / max(a + c, 1)
        pooled[f"precision_{key}"] = a / max(a + b, 1)
    return {"pooled": pooled, "per_volume": per}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="results file (rewritten after every case)")
    parser.add_argument("--work", default="/tmp/cseg_instance_rescale", help="scratch folder for inputs and outputs")
    parser.add_argument("--cases", nargs="*", default=None, help="only these cases")
    args = parser.parse_args(argv)
    work = Path(args.work)
    results: dict = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "cases": {}}
    path = Path(args.json)
    if path.is_file():
        results["cases"] = json.loads(path.read_text()).get("cases", {})
    for name, (folder, truths, configs, extra) in _cases(work).items():
        if args.cases and name not in args.cases:
            continue
        row = {}
        for mode, more in (("rescaled", []), ("not_rescaled", ["--model_spacing", "$None"])):
            out = work / "out" / name / mode
            cmd = bundle_command(BUNDLE, configs, "run", extra_args=["--dataset_dir", str(folder), "--output_dir", str(out),
                                                                     "--progress_bar", "False", *extra, *more])  # fmt: skip
            began = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                raise RuntimeError(f"{name} {mode} failed:\n{proc.stderr[-3000:]}")
            row[mode] = {**_score(out, truths), "seconds": round(time.perf_counter() - began, 1)}
            p = row[mode]["pooled"]
            print(f"{name:24s} {mode:13s} F1@0.5 {p['f1_iou50']:.3f}  F1@0.75 {p['f1_iou75']:.3f}  recall@0.5 {p['recall_iou50']:.3f}", flush=True)
        results["cases"][name] = row
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
