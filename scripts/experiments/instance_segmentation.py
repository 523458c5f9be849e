"""Train and evaluate the 3D instance bundle per data set; compare multicut, agglomeration and watershed.

For each data set (a data override of ``bundles/cell_instance_boundary_segmentation_3d``), the
bundle's ``train.json`` trains on the held-in training split (``--max_epochs`` epochs, or a
``--minutes`` budget through ``time_limit_s``) and chooses its checkpoint on the validation
split by F1 at IoU 0.5 (multicut); then ``evaluate.json`` scores that checkpoint on the
validation split once per instance method. Results: F1 at IoU 0.5 and 0.75, ARAND and VOI per
data set and method, with the training time. Runs go to ``runs/instance_segmentation/`` (git
ignores ``runs/``); ``--model NAME=PATH`` skips training for a data set and evaluates PATH.

Usage::

    .venv/bin/python scripts/experiments/instance_segmentation.py --datasets nuclei ovule \\
        --max_epochs 800 --json scripts/experiments/results/instance_segmentation.json
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "cell_instance_boundary_segmentation_3d"
DATASETS = {"nuclei": None, "ovule": "data_ovule.json", "ctc": "data_ctc.json", "gala": "data_gala.json"}
METHODS = ("multicut", "agglomeration", "watershed")


def _configs(names: list[str]) -> str:
    return "[" + ",".join(f"'{BUNDLE / 'configs' / n}'" for n in names) + "]"


def _run(cmd: list[str], log: Path) -> float:
    began = time.perf_counter()
    with open(log, "w") as out:
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--max_epochs", type=int, default=800)
    parser.add_argument("--minutes", type=float, default=None, help="training time budget per data set")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="evaluate PATH, do not train")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "instance_segmentation"))
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.model)
    py = [sys.executable, "-m", "monai.bundle", "run"]
    results: dict = {"max_epochs": args.max_epochs, "minutes": args.minutes, "datasets": {}}
    for name in args.datasets:
        data = [DATASETS[name]] if DATASETS[name] else []
        out = Path(args.runs) / name
        out.mkdir(parents=True, exist_ok=True)
        row: dict = {}
        if name in given:
            model = Path(given[name])
            row["trained_here"] = False
        else:
            cmd = py + ["training", "--config_file", _configs(["train.json"] + data), "--output_dir", str(out),
                        "--max_epochs", str(args.max_epochs), "--mlflow_experiment_name", f"instances_{name}"]  # fmt: skip
            if args.minutes:
                cmd += ["--time_limit_s", str(args.minutes * 60)]
            row["train_seconds"] = _run(cmd, out / "train.log")
            model = out / "models" / "model.pt"
            row["trained_here"] = True
        row["model"] = str(model)
        for method in METHODS:
            eval_dir = out / f"eval_{method}"
            cmd = py + ["evaluating", "--config_file", _configs(["train.json"] + data + ["evaluate.json"]),
                        "--output_dir", str(out), "--ckpt_path", str(model), "--eval_dir", str(eval_dir),
                        "--instance_method", method, "--mlflow_enabled", "False", "--progress_bar", "False"]  # fmt: skip
            seconds = _run(cmd, out / f"eval_{method}.log")
            with open(eval_dir / "metrics.csv") as f:
                metrics = {r[0]: float(r[1]) for r in csv.reader(f) if len(r) >= 2 and r[0].startswith("val_")}
            row[method] = {**metrics, "eval_seconds": seconds}
            print(f"{name:8s} {method:14s} " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
        results["datasets"][name] = row
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
