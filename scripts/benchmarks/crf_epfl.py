"""Dense-CRF speed on real slices with the fitted parameters: native (lattice), native (grid), pydensecrf.

The fitted EPFL CA1 parameters (``bundles/em_densecrf_postprocessing/configs/fitted_epfl_ca1.json``)
have narrow appearance widths (2.6 px, intensity sigma 0.038 of the scaled image), where a dense
bilateral grid has about 28 cells per pixel; the native backend then uses its permutohedral
lattice. This script refines the organelle bundle's probabilities for the given slices with

* ``native``: the native backend as shipped (it picks the lattice here),
* ``native_grid``: the native backend with the dense bilateral grid forced (what it did for
  every width before the lattice existed),
* ``pydensecrf``,

one backend after the other on each slice (in this process, after one warm-up call), and
writes the seconds per slice, their medians, the speedups against pydensecrf, and the
fraction of pixels where each native variant picks pydensecrf's label.

Usage (the probabilities from the organelle bundle's evaluation, see ``scripts/experiments/fit_crf.py``)::

    .venv/bin/python scripts/benchmarks/crf_epfl.py --prob_dir /tmp/orgprob/eval_2223242526 \\
        --indices 22 23 24 25 26 --json scripts/benchmarks/results/crf_epfl.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "experiments"))

VARIANTS = ("native", "native_grid", "pydensecrf")


def main(argv: list[str] | None = None) -> int:
    from fit_crf import add_data_arguments, load_items

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--prob_dir", required=True, help="folder with the organelle bundle's STEM_prob.tif files")
    parser.add_argument("--indices", type=int, nargs="+", required=True)
    parser.add_argument(
        "--params", default=str(ROOT / "bundles" / "em_densecrf_postprocessing" / "configs" / "fitted_epfl_ca1.json"),
        help="a CRF-bundle override with crf_params",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the native backend")
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from cseg_monai.data.writers import atomic_path
    from cseg_monai.postprocessing import CRFParams, DenseCRF, have_pydensecrf
    from cseg_monai.postprocessing.crf import kernels as crf_kernels  # the module whose grid/lattice limit is switched

    if not have_pydensecrf():
        print("pydensecrf is not installed: run `bash scripts/setup.sh crf` first", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    params = CRFParams.from_dict(json.loads(Path(args.params).read_text())["crf_params"])
    items = load_items(args.dataset_kind, args.dataset_dir, args.indices, args.prob_dir)
    grid_limit = crf_kernels._GRID_CELLS_PER_VOXEL

    def run(variant: str, image, prob):
        crf_kernels._GRID_CELLS_PER_VOXEL = math.inf if variant == "native_grid" else grid_limit
        try:
            model = DenseCRF(params, backend="pydensecrf" if variant == "pydensecrf" else "native", device="cpu")
            start = time.perf_counter()
            labels = model.labels(prob, image)
            return time.perf_counter() - start, labels
        finally:
            crf_kernels._GRID_CELLS_PER_VOXEL = grid_limit

    run("native", items[0][0], items[0][1])  # warm-up: library loading is not the CRF's time
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    agree: dict[str, list[float]] = {v: [] for v in VARIANTS[:2]}
    for index, (image, prob, _) in zip(args.indices, items):
        labels = {}
        for variant in VARIANTS:
            took, labels[variant] = run(variant, image, prob)
            seconds[variant].append(took)
        for variant in agree:
            agree[variant].append(float((labels[variant] == labels["pydensecrf"]).mean()))
        print(f"slice {index}: " + ", ".join(f"{v} {seconds[v][-1]:.2f} s" for v in VARIANTS), flush=True)
    result = {"params": params.to_dict(), "indices": args.indices, "threads_native": args.threads, "seconds": seconds}
    result["median_s"] = {v: statistics.median(s) for v, s in seconds.items()}
    result["speedup_vs_pydensecrf"] = {v: result["median_s"]["pydensecrf"] / result["median_s"][v] for v in VARIANTS[:2]}
    result["label_agreement_with_pydensecrf"] = {v: float(np.mean(a)) for v, a in agree.items()}
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_s", "speedup_vs_pydensecrf", "label_agreement_with_pydensecrf")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
