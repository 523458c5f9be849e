"""Train and evaluate the 3D instance bundle per data set; compare multicut, agglomeration and watershed.

For each data set (a data override of ``bundles/cell_instance_boundary_segmentation_3d``), the
bundle's ``train.json`` trains on the held-in training split (``--max_epochs`` epochs, or a
``--minutes`` budget through ``time_limit_s``) and chooses its checkpoint on the validation
split by F1 at IoU 0.5 (multicut); then ``evaluate.json`` scores that checkpoint on the
validation split once per instance method. Results: F1 at IoU 0.5 and 0.75, ARAND and VOI per
data set and method, with the training time.

Where the validation split is a z range of one volume (nuclei, ovule, gala), a second protocol,
``multicut_in_context``, predicts the WHOLE volume with the same ``evaluate.json`` (multicut)
and scores only the validation z range (predictions and ground truth cropped the same way,
then relabelled). The network then sees the image above the crop face, as it would when a
user segments the whole volume; cropped-only evaluation instead scores thin slivers of objects
cut by the crop face that no 3D method can place from the crop alone. No validation label is
used for training either way. Runs go to ``runs/instance_segmentation/`` (git
ignores ``runs/``); ``--model NAME=PATH`` skips training for a data set and evaluates PATH.

Usage::

    .venv/bin/python scripts/experiments/instance_segmentation.py --datasets nuclei ovule \\
        --max_epochs 800 --json scripts/experiments/results/instance_segmentation.json
    .venv/bin/python scripts/experiments/instance_segmentation.py --datasets nuclei --set instance_params#mask_watershed=True \\
        --max_epochs 600 --json /tmp/nuclei_masked.json
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cseg_monai.common import data_root
from cseg_monai.data.datasets.instances import SPLITS, datalist, load_item
from cseg_monai.workflows import bundle_command

ROOT = Path(__file__).resolve().parents[2]

BUNDLE = ROOT / "bundles" / "cell_instance_boundary_segmentation_3d"
DATASETS = {"nuclei": None, "ovule": "data_ovule.json", "ctc": "data_ctc.json", "gala": "data_gala.json"}
KINDS = {"nuclei": "plantseg_nuclei", "ovule": "plantseg_ovule", "ctc": "ctc_cho", "gala": "gala"}
METHODS = ("multicut", "agglomeration", "watershed")





def _run(cmd: list[str], log: Path) -> float:
    began = time.perf_counter()
    with open(log, "w") as out:
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return time.perf_counter() - began


def _score_in_context(name: str, eval_dir: Path, z_range: tuple[int, int]) -> dict:
    """Scores of the whole-volume prediction in ``eval_dir`` on the validation z range only."""
    import tifffile
    from skimage.segmentation import relabel_sequential

    from cseg_monai.metrics.instances import instance_scores

    (labels_file,) = sorted(eval_dir.glob("*_labels.tif"))
    _, truth, _ = load_item(datalist(KINDS[name], _data_dir(), None)[0])
    pred = tifffile.imread(labels_file)
    if pred.shape != truth.shape:
        raise ValueError(f"{labels_file}: shape {pred.shape} differs from the ground truth {truth.shape}")
    z0, z1 = z_range
    t = relabel_sequential(truth[z0:z1])[0].astype(np.int64)
    p = relabel_sequential(pred[z0:z1].astype(np.int64))[0]
    s = instance_scores(t, p, thresholds=(0.5, 0.6, 0.7, 0.8, 0.9))  # the bundle's val_mean_f1 thresholds
    return {
        "val_mean_f1": float(np.mean(s["f1"])), "val_f1_iou50": s["f1"][0],
        "val_f1_iou75": instance_scores(t, p, thresholds=(0.75,))["f1"][0],
        "val_arand": s["arand"], "val_voi": s["voi"], "n_true": s["n_true"], "n_pred": s["n_pred"],
    }  # fmt: skip


def _data_dir() -> Path:
    return data_root()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--max_epochs", type=int, default=800)
    parser.add_argument("--minutes", type=float, default=None, help="training time budget per data set")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="evaluate PATH, do not train")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a config override for training and evaluation, e.g. instance_params#mask_watershed=True (repeatable)",
    )  # fmt: skip
    parser.add_argument("--runs", default=str(ROOT / "runs" / "instance_segmentation"))
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.model)
    overrides: list[str] = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set wants KEY=VALUE, got {item!r}")
        overrides += [f"--{key}", value]
    results: dict = {"max_epochs": args.max_epochs, "minutes": args.minutes, "overrides": args.set, "datasets": {}}
    for name in args.datasets:
        data = [DATASETS[name]] if DATASETS[name] else []
        out = Path(args.runs) / name
        out.mkdir(parents=True, exist_ok=True)
        row: dict = {}
        if name in given:
            model = Path(given[name])
            row["trained_here"] = False
        else:
            cmd = bundle_command(BUNDLE, ["train.json"] + data, "training", extra_args=["--output_dir", str(out),
                        "--max_epochs", str(args.max_epochs), "--mlflow_experiment_name", f"instances_{name}", *overrides])  # fmt: skip
            if args.minutes:
                cmd += ["--time_limit_s", str(args.minutes * 60)]
            row["train_seconds"] = _run(cmd, out / "train.log")
            model = out / "models" / "model.pt"
            row["trained_here"] = True
        row["model"] = str(model)
        for method in METHODS:
            eval_dir = out / f"eval_{method}"
            cmd = bundle_command(BUNDLE, ["train.json"] + data + ["evaluate.json"], "evaluating", extra_args=[
                        "--output_dir", str(out), "--ckpt_path", str(model), "--eval_dir", str(eval_dir),
                        "--instance_params#method", method, "--mlflow_enabled", "False", "--progress_bar", "False", *overrides])  # fmt: skip
            seconds = _run(cmd, out / f"eval_{method}.log")
            with open(eval_dir / "metrics.csv") as f:
                metrics = {r[0]: float(r[1]) for r in csv.reader(f) if len(r) >= 2 and r[0].startswith("val_")}
            row[method] = {**metrics, "eval_seconds": seconds}
            print(f"{name:8s} {method:14s} " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
        z_range = SPLITS[KINDS[name]]["val"].get("z")
        if z_range is not None:
            eval_dir = out / "eval_in_context"
            cmd = bundle_command(BUNDLE, ["train.json"] + data + ["evaluate.json"], "evaluating", extra_args=[
                        "--output_dir", str(out), "--ckpt_path", str(model), "--eval_dir", str(eval_dir),
                        "--eval_split", "all", "--instance_params#method", "multicut", "--mlflow_enabled", "False",
                        "--progress_bar", "False", *overrides])  # fmt: skip
            seconds = _run(cmd, out / "eval_in_context.log")
            row["multicut_in_context"] = {**_score_in_context(name, eval_dir, z_range), "eval_seconds": seconds}
            print(f"{name:8s} multicut, in context  " + "  ".join(
                f"{k} {v:.4f}" for k, v in row["multicut_in_context"].items() if k.startswith("val_")), flush=True)  # fmt: skip
        results["datasets"][name] = row
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
