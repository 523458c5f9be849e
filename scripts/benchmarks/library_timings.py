"""Timings of library calls that once had wall-clock limits in the unit tests (timings live here now).

Each figure is a median of ``--repeats`` runs after a warm-up, printed against the budget the
unit tests used to assert, and written to a JSON result; the machine is shared and noisy, so
the budgets are a guide, not a pass/fail (``--strict`` exits 1 when one is exceeded).

Usage::

    .venv/bin/python scripts/benchmarks/library_timings.py --json scripts/benchmarks/results/library_timings.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from cseg_monai.data.phantom import make_phantom
from cseg_monai.metrics import isbi_scores
from cseg_monai.transforms import RandSparseCentreVoxelPatchd


def synthetic_membrane(size: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi-like cell boundaries and a blurred, noisy membrane probability."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros((size, size), np.int32)
    pts = rng.integers(0, size, size=(150, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, 151)
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    cells = seeds[iy, ix]
    target = (ndi.maximum_filter(cells, 3) != ndi.minimum_filter(cells, 3)).astype(np.uint8)
    prob = ndi.gaussian_filter(target.astype(float), 2.5)
    prob = np.clip(prob / prob.max() + rng.normal(0, 0.15, prob.shape), 0, 1)
    return prob, target


def sparse_sampling_case() -> Callable[[], object]:
    """64 context patches of 32^3 around voxels of 2 labelled planes of a 15 x 256 x 256 volume."""
    rng = np.random.default_rng(0)
    img = torch.as_tensor(rng.random((1, 15, 256, 256)).astype(np.float32))
    lab = np.full((1, 15, 256, 256), 255, np.int64)
    for z in (3, 10):
        lab[0, z] = rng.integers(0, 6, (256, 256))
    lab = torch.as_tensor(lab)
    t = RandSparseCentreVoxelPatchd(patch_size=(32, 32, 32), num_samples=64)
    return lambda: t({"image": img, "label": lab})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a budget is exceeded")
    args = parser.parse_args()
    prob, target = synthetic_membrane()
    cases = {  # name -> (call, budget in s that the unit tests asserted)
        "isbi_scores_512x512_19_thresholds": (lambda: isbi_scores(prob, target), 2.0),
        "make_phantom_512x512": (lambda: make_phantom((512, 512), seed=0), 1.5),
        "make_phantom_64x128x128": (lambda: make_phantom((64, 128, 128), seed=0), 10.0),
        "sparse_centre_voxel_patches_64x32cube": (sparse_sampling_case(), 0.2),
    }
    results, over = {}, []
    for name, (call, budget) in cases.items():
        call()  # warm-up (imports, caches)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        results[name] = {"median_s": median, "times_s": times, "budget_s": budget, "ratio_to_budget": median / budget}
        print(f"{name}: {median:.3f} s (budget {budget} s, {median / budget:.2f} of it)")
        if median > budget:
            over.append(name)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        machine = {"processor": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 1 if args.strict and over else 0


if __name__ == "__main__":
    sys.exit(main())
