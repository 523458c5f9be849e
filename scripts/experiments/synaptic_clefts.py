#!/usr/bin/env python
"""Synaptic clefts on the Drosophila VNC validation sections: which network, which loss, what TTA buys.

Each configuration trains the cleft bundle (``bundles/em_synaptic_cleft_detection``) on VNC sections
0-9 with windows of 8 x 160 x 160 (:data:`STUDY_PATCH`) and the same budget of optimiser steps, keeps its checkpoint with the lowest validation CREMI
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

``--score_weights NAME=CKPT`` scores a checkpoint trained elsewhere (the shipped weights, or weights
trained on the licence-clean EPFL PSD masks with ``configs/data_epfl_psd.json``) without training:
on the EPFL validation slices 20-21 and test slices 22-26 (two identical sections each, as it trains)
and on the VNC validation sections 10-14 with windows of 2 and of 8 sections, each without TTA, then
with ``--tta`` on VNC with the window depth that scored better there. The probability threshold and
the smallest cleft kept are also tuned on the EPFL validation slices (a balanced loss makes 0.5 a
low threshold for so rare a class) and every set is scored at both (``tta1`` at the bundle's 0.5
and no size floor, ``tta1_tuned`` at the tuned values). Records go to ``weights`` in
``--json``, one per measurement as it is made.

Every configuration's record is written to ``--json`` as soon as it is measured, and a rerun
skips those already there (``--redo`` measures them again): the study runs in parts. ``--picture``
writes raw | probability | ground truth of the best configuration's TTA prediction. ``--quick``
(for the tests) trains two configurations a few steps on phantoms instead.

Usage::

    .venv/bin/python scripts/experiments/synaptic_clefts.py --steps 2000 --json scripts/experiments/results/synaptic_clefts.json \\
        --picture bundles/em_synaptic_cleft_detection/docs/images/cleft_vnc.png
    .venv/bin/python scripts/experiments/synaptic_clefts.py --configs --json scripts/experiments/results/synaptic_clefts.json \\
        --score_weights epfl_psd=bundles/em_synaptic_cleft_detection/models/model.pt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from cseg_monai.common import data_root
from cseg_monai.data.datasets.synaptic_clefts import datalist, load_item
from cseg_monai.data.writers import atomic_path, output_stem
from cseg_monai.metrics import cremi_cleft_scores
from cseg_monai.transforms import LoadCleftd
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
#: the trainings' windows: 8 sections of 3D context (train.json's default, 2 sections, is the shipped EPFL recipe)
STUDY_PATCH = [8, 160, 160]
EPFL_TEST_SLICES = [22, 23, 24, 25, 26]
#: (name, data configs, overrides) of the sets --score_weights scores on; the VNC sets are train.json's validation sections
SCORE_SETS = {
    "epfl_val": (["data_epfl_psd.json"], {"val_sections": [20, 21], "patch_size": [2, 160, 160]}),
    "epfl_test": (["data_epfl_psd.json"], {"val_sections": EPFL_TEST_SLICES, "patch_size": [2, 160, 160]}),
    "vnc_val_z2": ([], {"patch_size": [2, 160, 160]}),
    "vnc_val_z8": ([], {"patch_size": [8, 160, 160]}),
}
#: what --score_weights tunes on the EPFL validation slices: the probability threshold and the smallest cleft (voxels).
#: The smallest cleft stays under half the smallest PSD of the training slices (296 pixels, 592 voxels in two sections):
#: on two validation slices a floor of 1000 voxels scored best and then emptied the VNC prediction.
TUNING_GRID = {"threshold": [0.5, 0.6, 0.7, 0.8, 0.9, 0.95], "min_cleft_size": [0, 100, 300]}
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
    common = {"output_dir": str(out), "progress_bar": False, "mlflow_experiment_name": "synaptic_clefts_experiment", "patch_size": STUDY_PATCH, **extra}
    items = 1 if extra.get("dataset_kind", "drosophila_vnc") == "drosophila_vnc" else extra.get("n_train_phantoms", 4)
    epochs = max(1, math.ceil(steps / math.ceil(items / 2)))  # batches of 2 volumes, 4 crops from each
    start = time.perf_counter()
    train = _run(base, "train", max_epochs=epochs, val_interval=max(1, epochs // 5), **common)
    seconds = time.perf_counter() - start
    trainer = train.parser.get_parsed_content("train#trainer")
    record = {"configs": base, "steps": int(trainer.state.iteration), "train_seconds": round(seconds, 1)}
    for n in dict.fromkeys((1, tta)):  # --tta 1: one evaluation
        record[f"tta{n}"] = _evaluate(CONFIGS[name], str(out / "models" / "model.pt"), n, out / f"eval_tta{n}", **common)
    return record


def _evaluate(configs: list[str], ckpt: str, tta: int, eval_dir: Path, **override) -> dict:
    """The bundle's ``evaluate.json`` over ``train.json`` + ``configs``: its scores (``None``: infinite), its probabilities in ``eval_dir``."""
    override = {"output_dir": str(eval_dir), **override}
    ev = _run(["train.json", *configs, "evaluate.json"], "eval", ckpt_path=ckpt, val_tta=tta, eval_dir=str(eval_dir), **override)
    metrics = ev.parser.get_parsed_content("validate#evaluator").state.metrics
    return {k: _finite(metrics[k]) for k in SCORES}


def _volumes(configs: list[str], override: dict, folder: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple]]:
    """``(image, probability, clefts, voxel_size_nm)`` of each volume of a scored set, the probabilities read back from ``folder``.

    The items are loaded as the bundle loads them (:class:`LoadCleftd`), so the names match what ``evaluate.json`` wrote.
    """
    kind, root = ("epfl_psd", data_root("epfl_ca1_multiclass")) if "data_epfl_psd.json" in configs else ("drosophila_vnc", data_root("drosophila_vnc"))
    out = []
    for item in datalist(kind, root, override["val_sections"], depth=override["patch_size"][0]):
        d = LoadCleftd()(item)
        prob_file = folder / f"{output_stem(d['image'].meta['filename_or_obj'])}_prob.tif"
        if not prob_file.is_file():
            raise SystemExit(f"{prob_file} is missing: the scores are tuned and drawn from the probabilities of the first run, "
                             "so give its --work folder, or --redo to measure again")
        voxel = tuple(d["image"].meta["voxel_size_nm"])  # the voxel size the bundle's configs state for the set
        out.append((d["image"][0].numpy(), tifffile.imread(prob_file), d["label"][0].numpy(), voxel))
    return out


def _finite(value: float) -> float | None:
    """``value`` rounded, or ``None`` where it is infinite (an empty prediction): strict JSON has no Infinity."""
    return round(float(value), 4) if np.isfinite(value) else None


def _score(scores: dict) -> float:
    """The CREMI score of a record for ``min`` (missing or infinite: ``inf``)."""
    value = scores.get("val_cremi_score")
    return math.inf if value is None else float(value)


def _scores_at(volumes: list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple]], threshold: float, min_size: int) -> dict:
    """The evaluator's scores (means over the volumes) at another probability threshold and smallest cleft (``None``: infinite)."""
    per = [cremi_cleft_scores(prob > threshold, clefts, voxel, min_size=min_size) for _, prob, clefts, voxel in volumes]
    keys = {"val_cremi_score": "cremi_score", "val_adf": "adf", "val_adgt": "adgt", "val_voxel_f1": "voxel_f1", "val_detection_f1": "detection_f1"}
    return {k: _finite(np.mean([v[src] for v in per])) for k, src in keys.items()}


def score_weights(name: str, ckpt: str, runs: dict, work: Path, tta: int, extra: dict, save: Callable[[], None], sections: dict | None = None) -> None:
    """Score checkpoint ``ckpt`` on each of :data:`SCORE_SETS` without TTA, then with ``tta`` on VNC, into ``runs[name]`` (saved after each).

    The probability threshold and smallest cleft are tuned on the EPFL validation slices
    (:data:`TUNING_GRID`, lowest CREMI score) and every set is scored at the defaults (``tta1``)
    and at the tuned values (``tta1_tuned``). ``sections`` maps ``"epfl"`` / ``"vnc"`` to other
    test slices / validation sections than the defaults (tests).
    """
    common = {"progress_bar": False, "mlflow_enabled": False, **extra}
    chosen = {"epfl_test": (sections or {}).get("epfl"), "vnc_val_z2": (sections or {}).get("vnc"), "vnc_val_z8": (sections or {}).get("vnc")}
    sets = {k: (c, o if chosen.get(k) is None else {**o, "val_sections": chosen[k]}) for k, (c, o) in SCORE_SETS.items()}
    inputs = {"checkpoint": str(ckpt), "sections": {k: o["val_sections"] for k, (_, o) in sets.items()}}
    record = runs.setdefault(name, dict(inputs))
    if {k: record.get(k) for k in inputs} != inputs:
        raise SystemExit(f"[{name}] was measured with {json.dumps({k: record.get(k) for k in inputs})}, now asked for {json.dumps(inputs)}: "
                         "give another NAME, or --redo to measure it again")
    record.update(inputs)
    for key, (configs, override) in sets.items():
        if "tta1" not in record.get(key, {}):
            start = time.perf_counter()
            record[key] = {"tta1": _evaluate(configs, ckpt, 1, work / name / key, **{**override, **common})}
            record[key]["seconds_tta1"] = round(time.perf_counter() - start, 1)
            print(f"[{name}] {key}: {json.dumps(record[key])}", flush=True)
            save()
        needed = "tta1_tuned" not in record[key] or (key == "epfl_val" and "tuned" not in record)
        volumes = _volumes(configs, override, work / name / key) if needed else None  # read once for the tuning and the tuned scores
        if key == "epfl_val" and "tuned" not in record:
            grid = [{"threshold": t, "min_cleft_size": m, **_scores_at(volumes, t, m)} for t in TUNING_GRID["threshold"] for m in TUNING_GRID["min_cleft_size"]]
            best = min(grid, key=_score)
            record["tuned"] = {"threshold": best["threshold"], "min_cleft_size": best["min_cleft_size"], "on": "epfl_val", "grid": grid}
            print(f"[{name}] tuned on the EPFL validation slices: threshold {best['threshold']}, min_cleft_size {best['min_cleft_size']}", flush=True)
            save()
        if "tta1_tuned" not in record[key]:
            tuned = record["tuned"]
            record[key]["tta1_tuned"] = _scores_at(volumes, tuned["threshold"], tuned["min_cleft_size"])
            save()
    best = min(("vnc_val_z2", "vnc_val_z8"), key=lambda k: _score(record[k]["tta1"]))
    if tta > 1 and f"tta{tta}" not in record[best]:
        configs, override = sets[best]
        folder = work / name / f"{best}_tta{tta}"
        record[best][f"tta{tta}"] = _evaluate(configs, ckpt, tta, folder, **{**override, **common})
        record[best][f"tta{tta}_tuned"] = _scores_at(_volumes(configs, override, folder), record["tuned"]["threshold"], record["tuned"]["min_cleft_size"])
        print(f"[{name}] {best} with {tta}-fold TTA: {json.dumps(record[best])}", flush=True)
        save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="result file (configurations already in it are skipped)")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps per training (4 crops of each of up to 2 volumes)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS), help="configurations to train (none: only --score_weights)")
    parser.add_argument("--score_weights", nargs="+", default=[], metavar="NAME=CKPT", help="checkpoints to score without training (see the module docstring)")
    parser.add_argument("--epfl_slices", type=int, nargs="+", default=EPFL_TEST_SLICES, help="--score_weights: EPFL test slices (positions)")
    parser.add_argument("--vnc_sections", type=int, nargs="+", default=[10, 11, 12, 13, 14], help="--score_weights: VNC sections")
    parser.add_argument("--tta", type=int, default=16, choices=(1, 2, 4, 8, 16))
    parser.add_argument("--work", default=str(ROOT / "outputs" / "synaptic_clefts"), help="scratch folder of the trainings")
    parser.add_argument("--picture", default=None, help="PNG of the best configuration's TTA prediction")
    parser.add_argument("--weights_picture", default=None, metavar="PREFIX",
                        help="PREFIX_vnc_val.png and PREFIX_epfl_test.png: the first --score_weights checkpoint's predictions (threshold 0.5)")
    parser.add_argument("--redo", action="store_true")
    parser.add_argument("--quick", action="store_true", help="phantoms, two configurations, a few steps (tests)")
    args = parser.parse_args()
    extra = dict(QUICK) if args.quick else {}
    if args.quick:
        extra["network_def#filters"] = [4, 8, 8, 8, 8]
        if args.configs == list(CONFIGS):
            args.configs = ["res_unet_focal", "res_unet_bce_dice"]
    path = Path(args.json)
    result = json.loads(path.read_text()) if path.is_file() else {}
    result.update(command=" ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), voxel_size_nm=extra.get("voxel_size_nm", [50.0, 4.6, 4.6]))
    runs = result.setdefault("configs", {})

    def save() -> None:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1) + "\n")

    chosen = {"epfl": args.epfl_slices, "vnc": args.vnc_sections}
    for spec in args.score_weights:
        name, sep, ckpt = spec.partition("=")
        if not sep or not name or not Path(ckpt).is_file():
            parser.error(f"--score_weights takes NAME=CKPT with an existing checkpoint file, got {spec!r}")
        if args.redo:
            result.get("weights", {}).pop(name, None)
        scoring = {k: v for k, v in extra.items() if k == "network_def#filters"}  # --quick: the small net, the real sets
        score_weights(name, ckpt, result.setdefault("weights", {}), Path(args.work), args.tta, scoring, save, chosen)
    for name in args.configs:
        if name in runs and not args.redo:
            print(f"[{name}] already measured, skipped")
            continue
        print(f"[{name}] training {args.steps} steps ...", flush=True)
        runs[name] = measure(name, args.steps, Path(args.work), extra, args.tta)
        print(f"[{name}] {json.dumps(runs[name])}", flush=True)
        save()
    base = runs.get("monai_unet_bce_dice", {}).get("tta1", {}).get("val_cremi_score")
    for r in runs.values():
        for n in (1, args.tta):
            score = r.get(f"tta{n}", {}).get("val_cremi_score")
            if base and score is not None:
                r[f"tta{n}"]["cremi_vs_baseline"] = round(score / base, 3)
    save()
    if args.weights_picture and args.score_weights:
        name = args.score_weights[0].partition("=")[0]
        record = result["weights"][name]
        depth = min(("vnc_val_z2", "vnc_val_z8"), key=lambda k: _score(record[k]["tta1"]))
        vnc = f"{depth}_tta{args.tta}" if args.tta > 1 and f"tta{args.tta}" in record[depth] else depth
        for key, folder in (("vnc_val", vnc), ("epfl_test", "epfl_test")):
            configs, override = SCORE_SETS[depth if key == "vnc_val" else key]
            override = {**override, "val_sections": chosen["vnc" if key == "vnc_val" else "epfl"][:1 if key == "epfl_test" else None]}
            image, prob, clefts, _ = _volumes(configs, override, Path(args.work) / name / folder)[0]
            picture = cleft_picture(image[None].astype(np.float32), prob[None], clefts[None])  # at the bundle's threshold, 0.5
            save_png(picture, f"{args.weights_picture}_{key}.png")
            print(f"picture of {name} on {key}: {args.weights_picture}_{key}.png")
    if args.picture and runs:
        best = min(runs, key=lambda k: _score(runs[k].get(f"tta{args.tta}", {})))
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
