#!/usr/bin/env python
"""What does self-supervised pretraining buy with few labels? Membranes and organelles with 1-20 labelled slices.

Two tasks (``--task``):

* ``isbi2012``: the membrane bundle (a MONAI UNet) on ISBI 2012 slices 0-19, validation 20-23;
  score: thinned V_rand (main) and membrane Dice. Its pretrained start is the UNet encoder of
  masked image modelling (``--pretext mim``, the default: ``models/backbone_mim_unet2d.pt`` of the
  pretraining bundle) or of PixPro (``--pretext pixpro``: ``models/backbone_pixpro_unet2d.pt``).
* ``epfl``: the organelle bundle (a centre-voxel net) on EPFL slices 0-19, validation 20-21;
  score: macro F1 (main) and kappa. Its pretrained start is the centre-region backbone
  (``--pretext centre_region``, ``models/backbone.pt``).

For each number of labelled slices (drawn from 0-19) the bundle's default ``train.json`` trains
three ways with the same fixed budget of iterations: from scratch, from the pretrained backbone
frozen (only the rest trains) and from it fine-tuned (``--pretrained_backbone PATH
[--freeze_backbone true]``). Each small-label point is repeated with ``--draws`` different draws
of the labelled slices (the same draws for the three starts). Every run ends with the bundle's
final validation (its own grid or sliding-window validation); the table reports the mean and
spread of the main score with the second score alongside. The task's first pretext fills the
``frozen`` and ``tuned`` entries; another one (``--pretext pixpro``) fills ``frozen_pixpro`` and
``tuned_pixpro`` beside them, trained on the same draws.

A fixed budget: ``--iterations`` optimiser steps per training (one step = ``batch_size`` slices x
``num_samples`` patches, the bundles' defaults 2 x 4), whatever the number of slices:
``max_epochs`` is set so that epochs x steps per epoch is that number, and the learning-rate
schedule spans it.

Runs are resumable: results are written after every training (``--json``; the tasks share the
file), and a run already there is not trained again. ``--only 2`` (label counts) and ``--inits
scratch tuned`` restrict a call, so the study can run in parts that merge into the one JSON.
``--quick`` runs one small point end to end (1 slice, 1 draw, 2 starts, a few iterations) for the tests.

Usage::

    .venv/bin/python scripts/experiments/label_efficiency.py --task isbi2012 --only 2 20 --iterations 200 \\
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
MODELS = ROOT / "bundles" / "em_selfsupervised_pretraining" / "models"
TRAIN = list(range(20))
COUNTS = (1, 2, 5, 20)
INITS = ("scratch", "frozen", "tuned")
TASKS = {
    "epfl": {"bundle": ROOT / "bundles" / "fibsem_organelle_centervoxel_segmentation", "data": "epfl_ca1_multiclass", "val": [20, 21],
             "main": "val_macro_f1", "second": "val_kappa", "pretexts": {"centre_region": MODELS / "backbone.pt"},
             "title": "EPFL organelles", "label": "macro F1"},
    "isbi2012": {"bundle": ROOT / "bundles" / "isbi2012_em_membrane_segmentation", "data": "isbi2012", "val": [20, 21, 22, 23],
                 "main": "val_vrand_thinned", "second": "val_dice",
                 "pretexts": {"mim": MODELS / "backbone_mim_unet2d.pt", "pixpro": MODELS / "backbone_pixpro_unet2d.pt"},
                 "title": "ISBI 2012 membranes", "label": "thinned V_rand"},
}  # fmt: skip


def draw_slices(n: int, draw: int) -> list[int]:
    """``n`` of the training slices 0-19, the ``draw``-th draw (all 20 for ``n`` = 20)."""
    if n >= len(TRAIN):
        return list(TRAIN)
    return sorted(int(i) for i in np.random.default_rng(1000 + draw).choice(TRAIN, size=n, replace=False))


def train_one(task: str, slices: list[int], init: str, iterations: int, out: Path, backbone: Path, batch_size: int = 2, num_samples: int = 4) -> dict:
    """Train ``task``'s bundle on ``slices`` from ``init`` for ``iterations`` steps; the final validation's metrics."""
    spec = TASKS[task]
    steps_per_epoch = math.ceil(len(slices) / batch_size)  # a batch: batch_size slices x num_samples patches each
    epochs = max(1, round(iterations / steps_per_epoch))
    override = {"train_indices": slices, "val_indices": spec["val"], "max_epochs": epochs, "val_interval": epochs + 1,
                "checkpoint_interval": epochs, "output_dir": str(out), "progress_bar": False, "batch_size": batch_size,
                "num_samples": num_samples, "mlflow_experiment_name": "label_efficiency", "dataset_dir": str(data_root(spec["data"]))}  # fmt: skip
    if init != "scratch":
        override.update(pretrained_backbone=str(backbone), freeze_backbone=init == "frozen")
    began = time.perf_counter()
    wf = bundle_workflow(spec["bundle"], ["train.json"], "train", **override)
    wf.initialize()
    wf.run()
    metrics = {k: float(v) for k, v in wf.parser.get_parsed_content("validate#evaluator").state.metrics.items()}
    steps = int(wf.parser.get_parsed_content("train#trainer").state.iteration)
    wf.finalize()
    return {"slices": slices, "epochs": epochs, "iterations": steps, "seconds": round(time.perf_counter() - began, 1), **metrics}


def first_pretext(task: str) -> str:
    """The task's first pretext: its runs fill the ``frozen`` and ``tuned`` entries."""
    return next(iter(TASKS[task]["pretexts"]))


def result_key(init: str, pretext: str, task: str) -> str:
    """Where a run is filed: ``scratch``; ``frozen`` / ``tuned`` for the task's first pretext; ``tuned_pixpro`` for another."""
    if init == "scratch" or pretext == first_pretext(task):
        return init
    return f"{init}_{pretext}"


def columns(results: dict, task: str) -> list[str]:
    """The starts present for ``task``: scratch, frozen, tuned, then the other pretexts' in pretext order."""
    keys = [result_key(i, p, task) for p in TASKS[task]["pretexts"] for i in INITS]
    present = {k for point in results.get(task, {}).values() for k in point}
    return [k for k in dict.fromkeys(keys) if k in present]


def summarise(runs: list[dict], key: str) -> dict:
    """``{"mean", "std", "runs"}`` of ``key`` over ``runs`` (population std; 0 for one run)."""
    values = [r[key] for r in runs]
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4), "runs": runs}


def table(results: dict, task: str = "epfl") -> str:
    """A Markdown table: mean +- spread of the main score (the second score alongside) per label count and start."""
    second = TASKS[task]["second"]
    name = second.removeprefix("val_").replace("_", " ")
    keys = columns(results, task)
    rows = ["| labelled slices | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for n in sorted(results.get(task, {}), key=int):
        cells = []
        for init in keys:
            s = results[task][n].get(init)
            if s is None:
                cells.append("-")
                continue
            other = np.mean([r.get(second, float("nan")) for r in s["runs"]])
            spread = f" +- {s['std']:.3f}" if len(s["runs"]) > 1 else ""
            cells.append(f"{s['mean']:.3f}{spread} ({name} {other:.3f}, {len(s['runs'])} run{'s' if len(s['runs']) > 1 else ''})")
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def picture(results: dict, path: Path) -> Path:
    """The main score against the number of labelled slices, one panel per task, one line per start, error bars = spread."""
    tasks = [t for t in TASKS if results.get(t)]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5.5 * max(1, len(tasks)), 3.8), squeeze=False)
    for ax, name in zip(axes[0], tasks):
        task, spec = results[name], TASKS[name]
        colours = ("tab:grey", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:red", "tab:brown")
        for init, colour in zip(columns(results, name), colours):
            xs = sorted(int(n) for n in task if init in task[n])
            if xs:
                ys = [task[str(n)][init]["mean"] for n in xs]
                es = [task[str(n)][init]["std"] for n in xs]
                label = f"{init} ({first_pretext(name)})" if init in ("frozen", "tuned") and len(spec["pretexts"]) > 1 else init
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label, color=colour)
        ax.set_xscale("log")
        ax.set_xticks(list(COUNTS), [str(c) for c in COUNTS])
        ax.set_xlabel("labelled training slices")
        ax.set_ylabel(f"validation {spec['label']} (slices {spec['val'][0]}-{spec['val'][-1]})")
        ax.set_title(f"{spec['title']}: scratch vs pretrained")
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
    parser.add_argument("--pretext", default=None, help="the pretrained start's pretext (isbi2012: mim or pixpro; epfl: centre_region; default: the first)")
    parser.add_argument("--backbone", default=None, help="the pretrained backbone file (default: the pretext's, in the pretraining bundle's models/)")
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
    if "main_score" in results:  # a file of the first version: its settings were those of the organelle task
        old = ("command", "iterations", "backbone", "validation_slices", "main_score")
        results.setdefault("settings", {})["epfl"] = {k: results.pop(k) for k in old if k in results}
    spec = TASKS[args.task]
    pretext = args.pretext or first_pretext(args.task)
    if pretext not in spec["pretexts"]:
        parser.error(f"--pretext {pretext!r}: the {args.task} task has {sorted(spec['pretexts'])}")
    backbone = Path(args.backbone or spec["pretexts"][pretext]).resolve()
    if any(i != "scratch" for i in inits) and not backbone.is_file():
        parser.error(f"the {pretext} backbone {backbone} does not exist: pretrain it with the pretraining bundle (see its docs) or pass --backbone")
    settings = results.setdefault("settings", {}).setdefault(args.task, {})
    if settings.get("iterations", iterations) != iterations:
        parser.error(f"{path} holds {args.task} runs of {settings['iterations']} iterations; a study keeps one budget (use another --json)")
    shown = str(backbone.relative_to(ROOT)) if backbone.is_relative_to(ROOT) else str(backbone)
    settings.update(command=" ".join(["scripts/experiments/label_efficiency.py", *(argv if argv is not None else sys.argv[1:])]),
                    iterations=iterations, validation_slices=spec["val"], main_score=spec["main"], second_score=spec["second"])  # fmt: skip
    if pretext == first_pretext(args.task):
        settings["backbone"] = shown
    settings.setdefault("backbones", {})[pretext] = shown
    task = results.setdefault(args.task, {})
    main_key = spec["main"]
    for n in counts:
        point = task.setdefault(str(n), {})
        for init in inits:
            key = result_key(init, pretext, args.task)
            done = point.get(key, {}).get("runs", [])
            for draw in range(1 if n >= len(TRAIN) else draws):
                slices = draw_slices(n, draw)
                if any(r["slices"] == slices for r in done):
                    continue
                out = Path(args.work) / args.task / f"n{n}_d{draw}_{key}"
                row = train_one(args.task, slices, init, iterations, out, backbone)
                done.append(row)
                point[key] = summarise(done, main_key)
                second = row.get(spec["second"], float("nan"))
                print(f"{args.task} n={n} draw={draw} {key:13s} slices {slices}: {spec['label']} {row[main_key]:.4f} {spec['second']} {second:.4f} "
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
