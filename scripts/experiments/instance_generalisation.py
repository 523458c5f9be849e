#!/usr/bin/env python
"""Do the nuclei and cells models hold up on data they never saw? A leave-one-dataset-out study.

``--family nuclei`` (the default) or ``--family cells``; what follows says it for nuclei, the
cells family is at the end.

Nuclei sets (``cseg_monai.data.datasets.instances.NUCLEI_KINDS``): PlantSeg nuclei (confocal,
3D, 0.28 x 0.13 x 0.13 um), CTC Fluo-N3DH-CHO (5 planes, 1 x 0.2 x 0.2 um) and the DSB 2018
2D image (a single plane). Runs:

* ``all``: the generalist, trained on the training parts of every set plus the synthetic
  ``nuclei_phantoms`` (the default recipe of ``configs/train.json``), checkpoint chosen on
  their validation parts; scored on the validation parts only. Its weights ship as the
  bundle's ``models/model.pt``.
* ``no_<set>``: the same recipe without ``<set>`` (neither its training nor its validation
  part); scored on the WHOLE left-out set (``all``) and on its validation part (``val``, the
  part the generalist is scored on).
* ``baseline``: Otsu + distance-transform watershed
  (:func:`cseg_monai.postprocessing.classical.otsu_watershed`), no training, on the same parts.

Every network score runs the bundle's default ``inference.json`` (``--ckpt_path``) through
``python -m monai.bundle`` on files written as a user has them (ImageJ TIFF with the
voxel size in the file where the set knows it; the DSB image as a 2D TIFF), so the object-size
and voxel-size rescaling are part of what is scored; ``ctc_no_spacing`` repeats the CTC
validation time points with no voxel size in the file. Scores (pooled over the volumes of a
part): F1 at IoU 0.5-0.9, precision and recall at 0.5, mean ARAND.

Post-processing is tuned per run on the validation parts of the sets that run trained on (never
on a left-out set): the network runs once per file in-process, then a small grid of
``instance_params`` (the family's ``grid`` in ``FAMILIES``, or ``--grid KEY=V1,V2``) is scored there, and the best by mean F1 at IoU 0.5 over
those sets is passed to the scored inference as ``--instance_params#KEY VALUE`` overrides.

``--init NAME=PATH`` starts a run from earlier weights. The runs of the committed results
(``scripts/experiments/results/instance_generalisation.json``, field ``init``): ``all`` from a
first 13-epoch generalist run (``all_stage1``, same data), ``no_plantseg`` from the shipped CTC
model, ``no_ctc`` and ``no_dsb`` from the shipped PlantSeg nuclei model: none of them has seen
the run's left-out set.

Training is resumable: a run whose ``checkpoint_final.pt`` exists is not trained again, one with
a newer checkpoint resumes from it; results are written after every run (``--json``), and a
run already in the results is not scored again unless ``--rescore``.

``--model NAME=PATH`` scores the weights PATH as run NAME with no training (an earlier
specialist that never saw the run's left-out set).

Cells (``--family cells``): the dense membrane-stain sets, PlantSeg ovule cells (confocal, 0.235
x 0.15 x 0.15 um, membranes bright) and gala neurons (FIB-SEM, no voxel size, membranes dark),
trained with ``train.json`` + ``data_cells.json`` and scored through ``inference.json`` +
``inference_cells.json``, no phantoms; ``all`` is the default cells model (``models/model_cells.pt``),
``no_ovule`` trains on gala alone, ``no_gala`` on ovule alone (the committed results score
the ovule-only ``model_cells.pt`` of bundle version 0.5.0 instead, with ``--model``: ``git show
2e59438:bundles/cell_instance_boundary_segmentation_3d/models/model_cells.pt > /tmp/ovule.pt``). The baseline is the
seeded membrane watershed (:func:`cseg_monai.postprocessing.classical.membrane_watershed`).

Usage::

    .venv/bin/python scripts/experiments/instance_generalisation.py --minutes 25 \\
        --json scripts/experiments/results/instance_generalisation.json \\
        --picture bundles/cell_instance_boundary_segmentation_3d/docs/images/instance_generalisation.png
    .venv/bin/python scripts/experiments/instance_generalisation.py --family cells --minutes 20 \\
        --json scripts/experiments/results/cell_generalisation.json \\
        --picture bundles/cell_instance_boundary_segmentation_3d/docs/images/cell_generalisation.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from skimage.segmentation import relabel_sequential

from cseg_monai.common import data_root
from cseg_monai.data.datasets.instances import CELL_KINDS, NUCLEI_KINDS, datalist, load_item
from cseg_monai.data.writers import atomic_path
from cseg_monai.metrics.instances import instance_scores
from cseg_monai.postprocessing.classical import membrane_watershed, otsu_watershed
from cseg_monai.workflows import bundle_command

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "cell_instance_boundary_segmentation_3d"
THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9)
SHORT = {"plantseg_nuclei": "plantseg", "ctc_cho": "ctc", "dsb_nuclei": "dsb", "plantseg_ovule": "ovule", "gala": "gala"}
#: Per family: the sets, what always joins training, the bundle configs, the instance_params
#: settings tried on the validation parts (every combination), the baseline.
FAMILIES = {
    "nuclei": {
        "kinds": NUCLEI_KINDS, "extra_kinds": ["nuclei_phantoms"],
        "train_configs": ["train.json"], "infer_configs": ["inference.json"],  # the default recipe is the nuclei generalist's
        "grid": {"sigma_seeds": [1.0, 2.0, 3.0, 4.0], "min_size": [30, 150], "foreground_threshold": [0.4, 0.5]},
        "baseline": "Otsu + watershed",
    },
    "cells": {
        "kinds": CELL_KINDS, "extra_kinds": [],
        "train_configs": ["train.json", "data_cells.json"], "infer_configs": ["inference.json", "inference_cells.json"],
        "grid": {"sigma_seeds": [0.5, 1.0, 2.0], "threshold": [0.4, 0.5, 0.6], "min_size": [50, 100]},
        "baseline": "membrane watershed",
    },
}  # fmt: skip
#: the membrane polarity of each cells set (a fact of the modality, for the baseline)
BRIGHT_MEMBRANES = {"plantseg_ovule": True, "gala": False}


def runs(family: str = "nuclei") -> dict[str, list[str]]:
    """Run name -> the sets of ``family`` it trains on (the family's ``extra_kinds`` always join)."""
    kinds = FAMILIES[family]["kinds"]
    out = {"all": list(kinds)}
    for kind in kinds:
        out[f"no_{SHORT[kind]}"] = [k for k in kinds if k != kind]
    return out


def _write_inputs(work: Path, kind: str, split: str, keep_spacing: bool = True) -> tuple[Path, dict[str, np.ndarray]]:
    """Files of one part as a user has them, and their ground truth by file stem."""
    folder = work / "inputs" / f"{kind}_{split}{'' if keep_spacing else '_no_spacing'}"
    truths: dict[str, np.ndarray] = {}
    for i, item in enumerate(datalist(kind, data_root(), split)):
        image, labels, spacing = load_item(item)
        stem = f"{SHORT[kind]}_{item.get('t', i)}"
        truths[stem] = labels
        path = folder / f"{stem}.tif"
        if path.is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        img = image[0]
        if img.shape[0] == 1:
            tifffile.imwrite(path, img[0])
        elif spacing is not None and keep_spacing:
            tifffile.imwrite(path, img, imagej=True, resolution=(1 / spacing[2], 1 / spacing[1]),
                             metadata={"spacing": spacing[0], "unit": "um", "axes": "ZYX"})  # fmt: skip
        else:
            tifffile.imwrite(path, img)
    return folder, truths


def _pooled(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """F1 per IoU threshold pooled over volumes, precision/recall at 0.5, mean ARAND."""
    tp = np.zeros(len(THRESHOLDS))
    fp = np.zeros(len(THRESHOLDS))
    fn = np.zeros(len(THRESHOLDS))
    arand, n_true, n_pred = [], 0, 0
    for truth, pred in pairs:
        pred = np.asarray(pred).reshape(truth.shape) if pred.size == truth.size else pred
        if pred.shape != truth.shape:
            raise ValueError(f"prediction {pred.shape} differs from the ground truth {truth.shape}")
        s = instance_scores(relabel_sequential(truth.astype(np.int64))[0], relabel_sequential(pred.astype(np.int64))[0], thresholds=THRESHOLDS)
        tp += s["tp"]
        fp += s["fp"]
        fn += s["fn"]
        arand.append(s["arand"])
        n_true += s["n_true"]
        n_pred += s["n_pred"]
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return {
        "iou": list(THRESHOLDS), "f1": [round(float(v), 4) for v in f1],
        "f1_iou50": round(float(f1[0]), 4), "f1_iou75": round(float(f1[THRESHOLDS.index(0.75)]), 4),
        "precision_iou50": round(float(tp[0] / max(tp[0] + fp[0], 1)), 4), "recall_iou50": round(float(tp[0] / max(tp[0] + fn[0], 1)), 4),
        "arand": round(float(np.mean(arand)), 4), "n_volumes": len(pairs), "n_true": n_true, "n_pred": n_pred,
    }  # fmt: skip


def _train(family: str, name: str, kinds: list[str], out: Path, minutes: float, max_epochs: int | None, init: str | None = None) -> float:
    models = out / "models"
    if (models / "checkpoint_final.pt").is_file():
        return 0.0
    fam = FAMILIES[family]
    extra = ["--output_dir", str(out), "--dataset_kind", repr([*kinds, *fam["extra_kinds"]]), "--progress_bar", "False",
             "--time_limit_s", str(minutes * 60), "--mlflow_experiment_name", f"{'instance' if family == 'nuclei' else 'cell'}_generalisation",
             "--mlflow_run_name", name]  # fmt: skip
    if max_epochs:
        extra += ["--max_epochs", str(max_epochs)]
    if init:
        extra += ["--init_checkpoint", str(Path(init).resolve())]
    if any(models.glob("checkpoint_*.pt")):
        extra += ["--resume", "True"]
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with open(out / "train.log", "a") as log:
        subprocess.run(bundle_command(BUNDLE, fam["train_configs"], "training", extra_args=extra), check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return time.perf_counter() - began


def _tune(family: str, model: Path, work: Path, kinds: list[str]) -> tuple[dict, list]:
    """The family's ``grid`` setting with the best mean F1@0.5 over the validation parts of ``kinds``."""
    import torch
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor

    from cseg_monai.postprocessing import BoundaryToInstancesd, InstanceParams
    from cseg_monai.transforms import RescaleToInputd

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / c) for c in FAMILIES[family]["infer_configs"]])
    parser["device"] = "$torch.device('cpu')"
    pre, net, inferer = (parser.get_parsed_content(k) for k in ("preprocessing", "network", "inferer"))
    state = torch.load(model, map_location="cpu", weights_only=True)
    net.load_state_dict(state.get("model", state) if isinstance(state, dict) and "model" in state else state)
    net.eval()
    base = parser.get_parsed_content("instance_params").to_dict()
    preds: dict[str, list] = {}
    for kind in kinds:
        folder, truths = _write_inputs(work, kind, "val")
        for stem, truth in truths.items():
            d = pre({"image": str(folder / f"{stem}.tif")})
            with torch.no_grad():
                prob = torch.sigmoid(inferer(d["image"][None], net))[0]
            preds.setdefault(kind, []).append((truth, MetaTensor(prob, meta=dict(d["image"].meta))))
    table = []
    grid = FAMILIES[family]["grid"]
    names = list(grid)
    for values in itertools.product(*grid.values()):
        params = InstanceParams.from_dict({**base, **dict(zip(names, values))})
        post = [
            BoundaryToInstancesd("pred", params, output_key="instances", boundary_channel=0, foreground_channel=1),
            RescaleToInputd("instances", reference_key="pred", modes="nearest"),
        ]
        per_kind = {}
        for kind, pairs in preds.items():
            scored = []
            for truth, prob in pairs:
                d = {"pred": prob}
                for t in post:
                    d = t(d)
                scored.append((truth, np.asarray(d["instances"][0])))
            per_kind[SHORT[kind]] = _pooled(scored)["f1_iou50"]
        table.append({**dict(zip(names, values)), **per_kind, "mean": round(float(np.mean(list(per_kind.values()))), 4)})
        print("tune", table[-1], flush=True)
    best = max(table, key=lambda r: r["mean"])
    return {k: best[k] for k in names}, table


def _infer(family: str, model: Path, folder: Path, out: Path, params: dict | None = None) -> dict[str, np.ndarray]:
    extra = [w for k, v in (params or {}).items() for w in (f"--instance_params#{k}", str(v))]
    cmd = bundle_command(BUNDLE, FAMILIES[family]["infer_configs"], "run", extra_args=["--ckpt_path", str(model), "--dataset_dir", str(folder),
                                                                  "--output_dir", str(out), "--progress_bar", "False", *extra])  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"inference on {folder} failed:\n{proc.stderr[-3000:]}")
    return {p.name[: -len("_labels.tif")]: tifffile.imread(p) for p in out.glob("*_labels.tif")}


def _score_network(
    family: str, model: Path, work: Path, tag: str, kind: str, split: str, keep_spacing: bool = True, params: dict | None = None
) -> dict:
    folder, truths = _write_inputs(work, kind, split, keep_spacing)
    began = time.perf_counter()
    preds = _infer(family, model, folder, work / "out" / tag / folder.name, params)
    missing = sorted(set(truths) - set(preds))
    if missing:
        raise RuntimeError(f"{tag}: no labels written for {missing}")
    return {**_pooled([(truths[s], preds[s]) for s in sorted(truths)]), "seconds": round(time.perf_counter() - began, 1)}


def _score_baseline(kind: str, split: str) -> dict:
    pairs = []
    for item in datalist(kind, data_root(), split):
        image, labels, spacing = load_item(item)
        if kind in BRIGHT_MEMBRANES:
            pairs.append((labels, membrane_watershed(image[0], spacing, bright_membranes=BRIGHT_MEMBRANES[kind])))
        else:
            pairs.append((labels, otsu_watershed(image[0], spacing)))
    return _pooled(pairs)


def _picture(family: str, results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = FAMILIES[family]["kinds"]
    baseline = FAMILIES[family]["baseline"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.6), sharey=True)
    for ax, kind in zip(axes, kinds):
        short = SHORT[kind]
        curves = [
            (f"generalist (val {short})", results["runs"].get("all", {}).get(f"{short}_val"), "C0", "-"),
            (f"left out (val {short})", results["runs"].get(f"no_{short}", {}).get(f"{short}_val"), "C1", "-"),
            (f"left out (all {short})", results["runs"].get(f"no_{short}", {}).get(f"{short}_all"), "C1", "--"),
            (f"{baseline} (val {short})", results["baseline"].get(f"{short}_val"), "C7", ":"),
        ]
        for label, row, colour, style in curves:
            if row:
                ax.plot(row["iou"], row["f1"], style, color=colour, marker="o", ms=3, label=label)
        ax.set_title(kind)
        ax.set_xlabel("IoU threshold")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("F1")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _parse_grid(items: list[str]) -> dict[str, list]:
    """``["edge_min_fraction=0,0.2"]`` -> ``{"edge_min_fraction": [0.0, 0.2]}``, names checked against InstanceParams."""
    from cseg_monai.postprocessing import InstanceParams

    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise SystemExit(f"--grid {item!r}: expected KEY=V1,V2,...")
        InstanceParams.check_names([key], "--grid")
        grid[key] = [json.loads(v) for v in values.split(",")]
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="results file (rewritten after every run)")
    parser.add_argument("--family", choices=list(FAMILIES), default="nuclei", help="nuclei (default) or cells")
    parser.add_argument("--runs", nargs="*", default=None, help=f"only these runs (nuclei: {', '.join(runs())}; cells: {', '.join(runs('cells'))})")
    parser.add_argument("--minutes", type=float, default=25.0, help="training time budget per run")
    parser.add_argument("--max_epochs", type=int, default=None, help="override the recipe's max_epochs")
    parser.add_argument("--init", action="append", default=[], metavar="NAME=PATH",
                        help="start run NAME from the weights PATH (which must never have seen its left-out set)")  # fmt: skip
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="score the weights PATH as run NAME, no training (they must never have seen its left-out set)")  # fmt: skip
    parser.add_argument("--work", default=None, help="runs folder (default runs/instance_generalisation, cells: runs/cell_generalisation)")
    parser.add_argument("--picture", default=None, help="F1-vs-IoU PNG")
    parser.add_argument("--rescore", action="store_true", help="score runs already in the results again")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="tune these instance_params values instead of the family's grid (repeatable; other keys keep the config's value)")  # fmt: skip
    args = parser.parse_args(argv)
    family = args.family
    if args.grid:
        FAMILIES[family]["grid"] = _parse_grid(args.grid)
    kinds_all = FAMILIES[family]["kinds"]
    work = Path(args.work or ROOT / "runs" / ("instance_generalisation" if family == "nuclei" else "cell_generalisation"))
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.update(command=" ".join(["scripts/experiments/instance_generalisation.py", *sys.argv[1:]]), thresholds=list(THRESHOLDS), family=family)
    results.setdefault("runs", {})
    results.setdefault("baseline", {})

    def save() -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n")

    if not results["baseline"] or args.rescore:
        for kind in kinds_all:
            for split in ("val", "all"):
                results["baseline"][f"{SHORT[kind]}_{split}"] = row = _score_baseline(kind, split)
                print(f"baseline {kind:16s} {split:4s} F1@0.5 {row['f1_iou50']:.3f} F1@0.75 {row['f1_iou75']:.3f} recall {row['recall_iou50']:.3f}", flush=True)
        save()
    given = dict(item.split("=", 1) for item in args.model)
    for name, kinds in runs(family).items():
        if args.runs and name not in args.runs:
            continue
        if name in results["runs"] and not args.rescore:
            continue
        out = work / name
        init = dict(item.split("=", 1) for item in args.init).get(name)
        if name in given:
            seconds, model = 0.0, Path(given[name]).resolve()
        else:
            seconds = _train(family, name, kinds, out, args.minutes, args.max_epochs, init)
            model = out / "models" / "model.pt"
        row: dict = {"trained_on": [*kinds, *FAMILIES[family]["extra_kinds"]], "train_seconds_this_call": round(seconds, 1)}
        row["model"] = str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model)
        row["init"] = init
        row["given"] = name in given
        params, row["tuning"] = _tune(family, model, work, kinds)
        row["instance_params"] = params
        print(f"{name:12s} tuned on the validation parts of {kinds}: {params}", flush=True)
        tests = [(k, "val") for k in kinds_all] if name == "all" else [(k, s) for k in kinds_all if k not in kinds for s in ("val", "all")]
        if name != "all":
            tests += [(k, "val") for k in kinds]  # on its own sets too (the specialist's own score)
        for kind, split in tests:
            row[f"{SHORT[kind]}_{split}"] = r = _score_network(family, model, work, name, kind, split, params=params)
            print(f"{name:12s} {kind:16s} {split:4s} F1@0.5 {r['f1_iou50']:.3f} F1@0.75 {r['f1_iou75']:.3f} recall {r['recall_iou50']:.3f}", flush=True)
        if name == "all" and family == "nuclei":
            row["ctc_no_spacing_val"] = r = _score_network(family, model, work, name, "ctc_cho", "val", keep_spacing=False, params=params)
            print(f"{name:12s} ctc_cho, no spacing val F1@0.5 {r['f1_iou50']:.3f} recall {r['recall_iou50']:.3f}", flush=True)
        results["runs"][name] = row
        save()
    if args.picture:
        _picture(family, results, Path(args.picture))
        print(f"wrote {args.picture}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
