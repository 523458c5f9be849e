#!/usr/bin/env python
"""Out-of-core CRF against the in-memory CRF: label agreement by halo width.

Phantom organelle slices (256 x 256, ``write_organelle_dataset``, seed 11) with noisy
probabilities of their labels (logits 1.5 x one-hot + 1.2 x N(0, 1)), refined by the CRF
bundle's default parameters once in memory (one block per slice) and once by ``LargeCRF`` in
64 x 64 blocks with a halo of 3, 4, 5 and 6 kernel sigmas. Prints and writes the fraction of
equal labels, and the accuracy of both against the phantom's labels.

Usage::

    .venv/bin/python scripts/experiments/crf_block_halo.py --json scripts/experiments/results/crf_block_halo.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import zarr

from cseg_monai.data.datasets.organelles import scale_image
from cseg_monai.data.phantom import write_organelle_dataset
from cseg_monai.data.writers import atomic_path
from cseg_monai.postprocessing import CRFParams, DenseCRF
from cseg_monai.workflows.large_crf import LargeCRF

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--halos", type=float, nargs="+", default=[3, 4, 5, 6])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crf_halo_"))
    root = Path(write_organelle_dataset(work / "data", n_slices=2, shape=(256, 256), seed=11))
    labels = np.stack([tifffile.imread(root / "labels" / f"{i}.tif").astype(np.int64) for i in range(2)])
    stack = np.stack([tifffile.imread(root / "images" / f"{i}.tif") for i in range(2)])
    logits = 1.5 * np.moveaxis(np.eye(6)[labels], -1, 0) + 1.2 * np.random.default_rng(0).normal(size=(6,) + labels.shape)
    prob = np.exp(logits - logits.max(0))
    prob = (prob / prob.sum(0)).astype(np.float32)
    zarr.open_array(str(work / "prob.zarr"), mode="w", shape=prob.shape, dtype="f4")[:] = prob
    zarr.open_array(str(work / "image.zarr"), mode="w", shape=stack.shape, dtype=stack.dtype)[:] = stack
    params = json.loads((ROOT / "bundles" / "em_densecrf_postprocessing" / "configs" / "inference.json").read_text())["crf_params"]
    crf = DenseCRF(CRFParams.from_dict(params), device="cpu")
    in_memory = np.stack([crf.labels(prob[:, z], scale_image(stack[z])) for z in range(2)])
    result = {"crf_params": params, "block_shape": [1, 64, 64], "image_shape": list(stack.shape),
              "accuracy_argmax": float((prob.argmax(0) == labels).mean()), "accuracy_in_memory": float((in_memory == labels).mean()), "halos": {}}  # fmt: skip
    for h in args.halos:
        run = LargeCRF(DenseCRF(CRFParams.from_dict(params), device="cpu"), block_shape=(1, 64, 64), chunks=(1, 64, 64), scheduler="synchronous",
                       progress=False, halo_sigmas=h)  # fmt: skip
        out = run.run_one(str(work / "image.zarr"), str(work / "prob.zarr"), str(work / f"halo{h}.ome.zarr"))
        blocks = zarr.open_group(out["output"])["labels/segmentation/0"][:]
        result["halos"][str(h)] = {"halo_voxels": out["halo"], "equal_to_in_memory": float((blocks == in_memory).mean()),
                                   "accuracy": float((blocks == labels).mean())}  # fmt: skip
        print(h, result["halos"][str(h)], flush=True)
    result["command"] = " ".join([".venv/bin/python", "scripts/experiments/crf_block_halo.py", *sys.argv[1:]])
    with atomic_path(args.json) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
