#!/usr/bin/env python
"""Synaptic clefts on the Drosophila VNC validation sections: which network, which loss, what TTA buys.

Each configuration trains the cleft bundle (``bundles/em_synaptic_cleft_detection``) on VNC sections
0-9 with the same budget of optimiser steps, keeps its checkpoint with the lowest validation CREMI
score (sections 10-14, no TTA), and is then scored on sections 10-14 without and with 16-fold
flip / transpose TTA (the bundle's ``evaluate.json``):

* ``monai_unet_bce_dice``: the baseline, a plain MONAI ``UNet`` (no residual units, concatenated
  skips) with the same anisotropic pooling and widths, MONAI's ``DiceCELoss`` (BCE + Dice,
  unweighted) (``configs/monai_unet_baseline.json``). MONAI's ``BasicUNet`` pools every axis four
  times, so it needs 16 sections per patch, and the training part has 10: it cannot train here.
* ``res_unet_focal`` (the bundle's default), ``res_unet_bce_dice``, ``res_unet_plus_focal``,
  ``res_unet_plus_bce_dice``: the residual nets with the per-crop balanced focal loss or
  weighted BCE + Dice.

Scores (:func:`cseg_monai.metrics.cremi_cleft_scores`, voxel size 50 x 4.6 x 4.6 nm): CREMI score,
ADF, ADGT (nm, lower is better), voxel F1 and cleft detection F1. The organelle bundle's synapse
class would be a second baseline where a model trained on VNC exists; the shipped organelle model
is trained on EPFL (another tissue and microscope), so it is not used.

Every configuration's record is written to ``--json`` as soon as it is measured, and a rerun
skips those already there (``--redo`` measures them again): the study runs in parts. ``--picture``
writes raw | probability | ground truth of the best configuration's TTA prediction. ``--quick``
(for the tests) trains two configurations a few steps on phantoms instead.

Usage::

    .venv/bin/python scripts/experiments/synaptic_clefts.py --steps 2000 --json scripts/experiments/results/synaptic_clefts.json \\
        --picture bundles/em_synaptic_cleft_detection/docs/images/cleft_vnc.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

from cseg_monai.common import data_root
from cseg_monai.data.datasets.synaptic_clefts import datalist, load_item
from cseg_monai.data.writers import atomic_path
from cseg_monai.visualisation import cleft_picture, save_png
from cseg_monai.workflows import bundle_workflow

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "em_synaptic_cleft_detection"
CONFIGS = {
    "monai_unet_bce_dice": ["monai_unet_baseline.json"],
    "res_unet_focal": [],
    "res_unet_bce_dice": ["loss_bce_dice.json"],
    "res_unet_plus_focal": ["res_unet_plus.json"],
    "res_unet_plus_bce_dice": ["res_unet_plus.json", "loss_bce_dice.json"],
}
SCORES = ("val_cremi_score", "val_adf", "val_adgt", "val_voxel_f1", "val_detection_f1")
QUICK = {"dataset_kind": "phantom", "phantom_shape": [8, 96, 96], "patch_size": [8, 64, 64], "n_train_phantoms": 1, "voxel_size_nm": [46.0, 4.6, 4.6]}


def _run(configs: list[str], kind: str, **override):
    wf = bundle_workflow(BUNDLE, configs, kind, **override)
    wf.initialize()
    try:
        wf.run()
    finally:
        wf.finalize()
    return wf


def measure(name: str, steps: int, work: Path, extra: dict, tta: int) -> dict:
    """Train configuration ``name`` for ``steps`` optimiser steps, then evaluate its best checkpoint with and without TTA."""
    out = work / name
    base = ["train.json", *CONFIGS[name]]
    common = {"output_dir": str(out), "progress_bar": False, "mlflow_experiment_name": "synaptic_clefts_experiment", **extra}
    items = 1 if extra.get("dataset_kind", "drosophila_vnc") == "drosophila_vnc" else extra.get("n_train_phantoms", 4)
    epochs = max(1, math.ceil(steps / math.ceil(items / 2)))  # batches of 2 volumes, 4 crops from each
    start = time.perf_counter()
    train = _run(base, "train", max_epochs=epochs, val_interval=max(1, epochs // 5), **common)
    seconds = time.perf_counter() - start
    trainer = train.parser.get_parsed_content("train#trainer")
    record = {"configs": base, "steps": int(trainer.state.iteration), "train_seconds": round(seconds, 1)}
    for n in (1, tta):
        ev = _run(base + ["evaluate.json"], "eval", ckpt_path=str(out / "models" / "model.pt"), val_tta=n, eval_dir=str(out / f"eval_tta{n}"), **common)
        metrics = ev.parser.get_parsed_content("validate#evaluator").state.metrics
        record[f"tta{n}"] = {k: round(float(metrics[k]), 4) for k in SCORES}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="result file (configurations already in it are skipped)")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps per training (4 crops of each of up to 2 volumes)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--tta", type=int, default=16, choices=(2, 4, 8, 16))
    parser.add_argument("--work", default=str(ROOT / "outputs" / "synaptic_clefts"), help="scratch folder of the trainings")
    parser.add_argument("--picture", default=None, help="PNG of the best configuration's TTA prediction")
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--quick", action="store_true", help="phantoms, two configurations, a few steps (tests)")
    args = parser.parse_args()
    extra = dict(QUICK) if args.quick else {}
    if args.quick:
        extra["network_def#filters"] = [4, 8, 8, 8, 8]
        args.configs = ["res_unet_focal", "res_unet_bce_dice"]
    path = Path(args.json)
    result = json.loads(path.read_text()) if path.is_file() else {}
    result.update(command=" ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), voxel_size_nm=extra.get("voxel_size_nm", [50.0, 4.6, 4.6]))
    runs = result.setdefault("configs", {})
    for name in args.configs:
        if name in runs and not args.redo:
            print(f"[{name}] already measured, skipped")
            continue
        print(f"[{name}] training {args.steps} steps ...", flush=True)
        runs[name] = measure(name, args.steps, Path(args.work), extra, args.tta)
        print(f"[{name}] {json.dumps(runs[name])}", flush=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    base = runs.get("monai_unet_bce_dice", {}).get("tta1", {}).get("val_cremi_score")
    for r in runs.values():
        for n in (1, args.tta):
            score = r.get(f"tta{n}", {}).get("val_cremi_score")
            if base and score is not None:
                r[f"tta{n}"]["cremi_vs_baseline"] = round(score / base, 3)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    if args.picture and runs:
        best = min(runs, key=lambda k: runs[k].get(f"tta{args.tta}", {}).get("val_cremi_score", math.inf))
        folder = Path(args.work) / best / f"eval_tta{args.tta}"
        prob_file = next(folder.glob("*_prob.tif"))
        kind = extra.get("dataset_kind", "drosophila_vnc")
        root = None if kind == "phantom" else str(data_root("drosophila_vnc"))
        item = datalist(kind, root, [10, 11, 12, 13, 14], extra.get("phantom_shape", (16, 192, 192)), 1, 1000)[0]
        image, clefts, _ = load_item(item)
        save_png(cleft_picture(image[None].astype(np.float32), tifffile.imread(prob_file)[None], clefts[None]), args.picture)
        print(f"picture of {best}: {args.picture}")


if __name__ == "__main__":
    main()
