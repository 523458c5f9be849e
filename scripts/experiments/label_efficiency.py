#!/usr/bin/env python
"""What does self-supervised pretraining buy with few labels? The organelle task with 1-20 labelled slices.

For each number of labelled EPFL slices (drawn from the training slices 0-19; validation 20-21)
the organelle bundle's default ``train.json`` trains three ways with the same fixed budget of
iterations: from scratch, from the pretrained backbone frozen (only the head trains) and from
it fine-tuned (``--pretrained_backbone PATH [--freeze_backbone true]``; the backbone of the
pretraining bundle, ``bundles/em_selfsupervised_pretraining/models/backbone.pt`` by default).
Each small-label point is repeated with ``--draws`` different draws of the labelled slices (the
same draws for the three starts). Every run ends with the bundle's final validation on slices
20-21 (the grid validation of ``train.json``: macro F1, kappa, macro AP); the table reports the
mean and spread of macro F1 (the main score) with kappa alongside.

A fixed budget: ``--iterations`` optimiser steps per training (one step = ``batch_size`` slices x
``num_samples`` tiles of 214 x 214 pixels, the bundle's defaults 2 x 4),
whatever the number of slices: ``max_epochs`` is set so that epochs x steps per epoch is that
number, and the learning-rate schedule spans it.

Runs are resumable: results are written after every training (``--json``), and a run already there
is not trained again. ``--only 2`` (label counts) and ``--inits scratch tuned`` restrict a call, so
the study can run in parts that merge into the one JSON. ``--quick`` runs one small point end to
end (1 slice, 1 draw, 2 starts, a few iterations) for the tests.

The membrane task (ISBI 2012) joins when its MONAI UNet encoder can be pretrained (PixPro or
masked image modelling, the pretexts not built yet); until then ``--task`` takes ``epfl`` only.

Usage::

    .venv/bin/python scripts/experiments/label_efficiency.py --only 2 20 --iterations 300 \\
        --json scripts/experiments/results/label_efficiency.json \\
        --picture bundles/em_selfsupervised_pretraining/docs/images/label_efficiency.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np

from cseg_monai.common import data_root
from cseg_monai.data.writers import atomic_path
from cseg_monai.tracking import new_run
from cseg_monai.workflows import bundle_workflow

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ORGANELLES = ROOT / "bundles" / "fibsem_organelle_centervoxel_segmentation"
BACKBONE = ROOT / "bundles" / "em_selfsupervised_pretraining" / "models" / "backbone.pt"
TRAIN, VAL = list(range(20)), [20, 21]
COUNTS = (1, 2, 5, 20)
INITS = ("scratch", "frozen", "tuned")
TASKS = {"epfl": {"main": "val_macro_f1", "others": ["val_kappa", "val_macro_ap", "val_accuracy"]}}


def draw_slices(n: int, draw: int) -> list[int]:
    """``n`` of the training slices 0-19, the ``draw``-th draw (all 20 for ``n`` = 20)."""
    if n >= len(TRAIN):
        return list(TRAIN)
    return sorted(int(i) for i in np.random.default_rng(1000 + draw).choice(TRAIN, size=n, replace=False))


def train_one(slices: list[int], init: str, iterations: int, out: Path, backbone: Path, batch_size: int = 2, num_samples: int = 4) -> dict:
    """Train the organelle bundle on ``slices`` from ``init`` for ``iterations`` steps; the final validation's metrics."""
    steps_per_epoch = math.ceil(len(slices) / batch_size)  # a batch: batch_size slices x num_samples tiles each
    epochs = max(1, round(iterations / steps_per_epoch))
    override = {"train_indices": slices, "val_indices": VAL, "max_epochs": epochs, "val_interval": epochs + 1,
                "checkpoint_interval": epochs, "output_dir": str(out), "progress_bar": False, "batch_size": batch_size,
                "num_samples": num_samples, "mlflow_experiment_name": "label_efficiency", "dataset_dir": str(data_root("epfl_ca1_multiclass"))}  # fmt: skip
    if init != "scratch":
        override.update(pretrained_backbone=str(backbone), freeze_backbone=init == "frozen")
    began = time.perf_counter()
    wf = bundle_workflow(ORGANELLES, ["train.json"], "train", **override)
    wf.initialize()
    wf.run()
    metrics = {k: float(v) for k, v in wf.parser.get_parsed_content("validate#evaluator").state.metrics.items()}
    steps = int(wf.parser.get_parsed_content("train#trainer").state.iteration)
    wf.finalize()
    return {"slices": slices, "epochs": epochs, "iterations": steps, "seconds": round(time.perf_counter() - began, 1), **metrics}


def summarise(runs: list[dict], key: str) -> dict:
    """``{"mean", "std", "runs"}`` of ``key`` over ``runs`` (population std; 0 for one run)."""
    values = [r[key] for r in runs]
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4), "runs": runs}


def table(results: dict, task: str = "epfl") -> str:
    """A Markdown table: mean +- spread of the main score (kappa alongside) per label count and start."""
    rows = ["| labelled slices | " + " | ".join(INITS) + " |", "|---" * (len(INITS) + 1) + "|"]
    for n in sorted(results.get(task, {}), key=int):
        cells = []
        for init in INITS:
            s = results[task][n].get(init)
            if s is None:
                cells.append("-")
                continue
            kappa = np.mean([r.get("val_kappa", float("nan")) for r in s["runs"]])
            spread = f" +- {s['std']:.3f}" if len(s["runs"]) > 1 else ""
            cells.append(f"{s['mean']:.3f}{spread} (kappa {kappa:.3f}, {len(s['runs'])} run{'s' if len(s['runs']) > 1 else ''})")
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def picture(results: dict, path: Path) -> Path:
    """Macro F1 against the number of labelled slices, one line per start, error bars = spread."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    task = results.get("epfl", {})
    for init, colour in zip(INITS, ("tab:grey", "tab:blue", "tab:green")):
        xs = sorted(int(n) for n in task if init in task[n])
        if xs:
            ys = [task[str(n)][init]["mean"] for n in xs]
            es = [task[str(n)][init]["std"] for n in xs]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=init, color=colour)
    ax.set_xscale("log")
    ax.set_xticks(list(COUNTS), [str(c) for c in COUNTS])
    ax.set_xlabel("labelled training slices")
    ax.set_ylabel("validation macro F1 (slices 20-21)")
    ax.set_title("EPFL organelles: scratch vs pretrained backbone")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="results file (rewritten after every training)")
    parser.add_argument("--task", choices=list(TASKS), default="epfl")
    parser.add_argument("--only", nargs="*", type=int, default=None, help=f"label counts to run (default {list(COUNTS)})")
    parser.add_argument("--inits", nargs="*", choices=INITS, default=list(INITS))
    parser.add_argument("--draws", type=int, default=3, help="draws of the labelled slices per small-label point")
    parser.add_argument("--iterations", type=int, default=300, help="optimiser steps per training (the fixed budget)")
    parser.add_argument("--backbone", default=str(BACKBONE), help="the pretrained backbone file")
    parser.add_argument("--work", default=str(ROOT / "runs" / "label_efficiency"), help="training outputs")
    parser.add_argument("--picture", default=None, help="PNG of the table (also logged to MLflow)")
    parser.add_argument("--quick", action="store_true", help="one small point end to end (tests)")
    args = parser.parse_args(argv)
    counts = [1] if args.quick else (args.only or list(COUNTS))
    inits = ["scratch", "tuned"] if args.quick else args.inits
    draws = 1 if args.quick else args.draws
    iterations = 4 if args.quick else args.iterations
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.is_file() else {}
    backbone = Path(args.backbone).resolve()
    results.update(command=" ".join(["scripts/experiments/label_efficiency.py", *(argv if argv is not None else sys.argv[1:])]),
                   iterations=iterations, backbone=str(backbone.relative_to(ROOT)) if backbone.is_relative_to(ROOT) else str(backbone),
                   validation_slices=VAL, main_score=TASKS[args.task]["main"])  # fmt: skip
    task = results.setdefault(args.task, {})
    main_key = TASKS[args.task]["main"]
    for n in counts:
        point = task.setdefault(str(n), {})
        for init in inits:
            done = point.get(init, {}).get("runs", [])
            for draw in range(1 if n >= len(TRAIN) else draws):
                slices = draw_slices(n, draw)
                if any(r["slices"] == slices for r in done):
                    continue
                out = Path(args.work) / args.task / f"n{n}_d{draw}_{init}"
                row = train_one(slices, init, iterations, out, Path(args.backbone))
                done.append(row)
                point[init] = summarise(done, main_key)
                print(f"{args.task} n={n} draw={draw} {init:8s} slices {slices}: macro F1 {row[main_key]:.4f} kappa {row.get('val_kappa', float('nan')):.4f} "
                      f"({row['iterations']} steps, {row['seconds']:.0f} s)", flush=True)  # fmt: skip
                with atomic_path(path) as tmp:
                    tmp.write_text(json.dumps(results, indent=2) + "\n")
    if args.picture:
        pic = picture(results, Path(args.picture))
        print(f"wrote {pic}")
        try:
            client, run_id = new_run(f"sqlite:///{Path(args.work) / 'mlruns.db'}", "label_efficiency_study")
            client.log_artifact(run_id, str(pic), artifact_path="plots")
            client.log_artifact(run_id, str(path), artifact_path="results")
            client.set_terminated(run_id)
        except Exception as err:  # noqa: BLE001 - the study's files are written; tracking is extra
            print(f"could not log to MLflow: {err}", file=sys.stderr)
    print(table(results, args.task))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
