"""Fit the dense-CRF parameters on the organelle bundle's validation slices; write a config override.

Inputs are the class probabilities the organelle bundle's evaluation wrote for the validation
slices (``STEM_prob.tif``); the search (:func:`cseg_monai.postprocessing.crf.fitting.random_search`)
maximises macro F1 there. The winner is written as an override of the CRF bundle
(``{"crf_params": ...}``); with ``--test_prob_dir``/``--test_indices`` the winner and "no CRF"
are also scored on held-out slices, which play no part in the choice.

Usage (EPFL CA1: fit on validation slices 20-21, report on the held-out slices 22-26)::

    B=bundles/fibsem_organelle_centervoxel_segmentation
    for split in "20,21" "22,23,24,25,26"; do
      .venv/bin/python -m monai.bundle run evaluating \\
        --config_file "['$B/configs/train.json','$B/configs/evaluate.json']" \\
        --ckpt_path $B/models/model.pt --output_dir /tmp/orgprob \\
        --eval_indices "[$split]" --eval_dir /tmp/orgprob/eval_${split//,/}
    done
    .venv/bin/python scripts/experiments/fit_crf.py --prob_dir /tmp/orgprob/eval_2021 --indices 20 21 \\
        --test_prob_dir /tmp/orgprob/eval_2223242526 --test_indices 22 23 24 25 26 --trials 80 \\
        --override bundles/em_densecrf_postprocessing/configs/fitted_epfl_ca1.json \\
        --json scripts/experiments/results/crf_fit_epfl_ca1.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cseg_monai.common import data_root

ROOT = Path(__file__).resolve().parents[2]


def load_items(kind: str, dataset_dir: str, indices: list[int], prob_dir: str):
    from cseg_monai.workflows.crf import _load_image, load_probabilities, organelle_crf_datalist

    items = []
    for item in organelle_crf_datalist(kind, dataset_dir, indices, prob_dir):
        image, label = _load_image(item)
        items.append((image, load_probabilities(item["prob"], image.shape[1:]), label))
    return items


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset_kind`` and ``--dataset_dir`` (default: EPFL CA1 under ``$CSEG_DATA_DIR`` or ../shared/data)."""
    default_data = str(data_root("epfl_ca1_multiclass"))
    parser.add_argument("--dataset_kind", default="epfl_ca1")
    parser.add_argument("--dataset_dir", default=default_data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--prob_dir", required=True, help="STEM_prob.tif of the validation items")
    parser.add_argument("--indices", type=int, nargs="+", required=True, help="validation items (fit)")
    parser.add_argument("--test_prob_dir", help="STEM_prob.tif of held-out items (reported only)")
    parser.add_argument("--test_indices", type=int, nargs="+")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="native", choices=["native", "pydensecrf"])
    parser.add_argument("--override", help="write the winner as a CRF-bundle override JSON here")
    parser.add_argument("--json", help="write every trial and the scores here")
    args = parser.parse_args(argv)
    if bool(args.test_prob_dir) != bool(args.test_indices):
        parser.error("--test_prob_dir and --test_indices go together")

    from cseg_monai.data.writers import atomic_path
    from cseg_monai.postprocessing import CRFParams, DenseCRF
    from cseg_monai.postprocessing.crf.fitting import random_search, score_params

    n_classes = 6
    began = time.perf_counter()
    val = load_items(args.dataset_kind, args.dataset_dir, args.indices, args.prob_dir)
    best, trials = random_search(
        val, n_classes, n_trials=args.trials, seed=args.seed, backend=args.backend, log=lambda s: print(s, flush=True)
    )
    result = {
        "validation_indices": args.indices,
        "objective": "macro_f1",
        "trials": trials,
        "best": best,
        "no_crf_validation": trials[0],
        "search_seconds": time.perf_counter() - began,
    }
    print(f"best on validation: {best['name']} macro F1 {best['macro_f1']:.4f} (no CRF {trials[0]['macro_f1']:.4f})")
    if args.test_prob_dir:
        test = load_items(args.dataset_kind, args.dataset_dir, args.test_indices, args.test_prob_dir)
        crf = None if best["params"] is None else DenseCRF(CRFParams.from_dict(best["params"]), backend=args.backend)
        result["test_indices"] = args.test_indices
        result["test_no_crf"] = score_params(None, test, n_classes)
        result["test_best"] = score_params(crf, test, n_classes)
        print(f"held-out: no CRF {result['test_no_crf']}, fitted CRF {result['test_best']}")
    if args.override:
        if best["params"] is None:
            print("no CRF setting beat 'no CRF' on validation: the override switches both kernels off")
            params = CRFParams(smoothness_weight=0.0, appearance_weight=0.0).to_dict()
        else:
            params = best["params"]
        with atomic_path(args.override) as tmp:
            tmp.write_text(json.dumps({"crf_params": params}, indent=4) + "\n")
        print(f"wrote {args.override}")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
