"""Compare organelle backbones on EPFL CA1 under the same CPU time budget per backbone.

Each backbone trains the organelle bundle's DEFAULT config (``train.json``; ``unet`` adds
``unet.json``) on slices 0-19 with validation (checkpoint selection by macro AP, on a grid
subsample) on slices 20-21 -- 22 slices used for training -- then its best checkpoint is
evaluated DENSELY (every pixel, ``evaluate.json``) on the validation slices 20-21 and on the
held-out slices 22-26 (z 135-164 of the EPFL stack, never seen in training or selection).

The number of epochs is set from a short calibration run (3 epochs) so that training takes
about ``--minutes``; a time limit of 1.15 x the budget stops it in any case. Every training
and evaluation is a real ``python -m monai.bundle run`` command (printed); MLflow is on.

Usage::

    .venv/bin/python scripts/experiments/organelle_backbones.py --minutes 12 \\
        --json scripts/experiments/results/organelle_backbones.json
    .venv/bin/python scripts/experiments/organelle_backbones.py --quick --json /tmp/quick.json   # smoke run

Writes the JSON (per backbone: minutes, epochs, val and test accuracy / macro F1 / macro AP /
kappa and per-class F1/AP) and prints a Markdown table. Existing finished runs under
``--output_dir`` are reused unless ``--fresh``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cseg_monai.common import data_root
from cseg_monai.workflows import bundle_command

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "fibsem_organelle_centervoxel_segmentation"
CONFIGS = BUNDLE / "configs"
TRAIN, VAL, TEST = list(range(0, 20)), [20, 21], [22, 23, 24, 25, 26]
DEFAULT_BACKBONES = ("4_conv", "4_conv_resnet_valid", "dilated_conv_2_layer", "unet")
_EPOCH = re.compile(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)")


def _overrides(backbone: str) -> tuple[list[str], list[str]]:
    """Extra config files and command-line overrides of a backbone."""
    if backbone in ("unet", "swinunetr"):
        return [str(CONFIGS / f"{backbone}.json")], []
    from cseg_monai.networks import build_centre_voxel_net

    net = build_centre_voxel_net(backbone, 6, spatial_dims=2)
    # tiles of about 214 pixels (the default backbone's 102 + 16 x 7), so every net sees similar tiles
    grid = max(1, round((214 - net.patch_size[0]) / net.strides[0]) + 1)
    shift = max(net.strides[0] // 2, 0)
    shifts = [[0, 0], [shift, shift], [0, shift], [shift, 0]] if shift else [[0, 0]]
    return [], ["--backbone", backbone, "--grid_size", str(grid), "--val_shifts", json.dumps(shifts).replace(" ", "")]


def _cmd(run_id: str, files: list[str], args: list[str]) -> list[str]:
    return bundle_command(BUNDLE, files, run_id, extra_args=args)


def _run(cmd: list[str], log: Path) -> float:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - t0
    if proc.returncode:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"command failed ({proc.returncode}), log {log}:\n{tail}")
    return seconds


def _epoch_seconds(log: Path) -> list[float]:
    return [int(h) * 3600 + int(m) * 60 + float(s) for _, h, m, s in _EPOCH.findall(log.read_text())]


def _evaluate(files: list[str], common: list[str], out: Path, ckpt: Path, indices: list[int], name: str) -> dict:
    eval_dir = out / f"eval_{name}"
    _run(_cmd("evaluating", [str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json"), *files],
              [*common, "--output_dir", str(out), "--ckpt_path", str(ckpt), "--eval_indices", json.dumps(indices).replace(" ", ""),
               "--eval_dir", str(eval_dir), "--mlflow_run_name", f"evaluate_{name}"]), out / f"evaluate_{name}.log")
    scores = json.loads((eval_dir / "class_scores.json").read_text())
    return {k: scores[k] for k in ("accuracy", "macro_f1", "macro_ap", "kappa")} | {"per_class": scores["per_class"]}


def run_backbone(backbone: str, minutes: float, out: Path, quick: bool, fresh: bool) -> dict:
    files, extra = _overrides(backbone)
    summary_path = out / "train_summary.json"
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = (TRAIN, VAL) if not quick else ([0, 1], [20])
    common = ["--progress_bar", "False", "--train_indices", json.dumps(train).replace(" ", ""),
              "--val_indices", json.dumps(val).replace(" ", ""), *extra]
    if summary_path.is_file() and (out / "models" / "model.pt").is_file():
        summary = json.loads(summary_path.read_text())
        print(f"{backbone}: reusing the finished training in {out}", flush=True)
    else:
        calib = out / "calibration"
        _run(_cmd("training", [str(CONFIGS / "train.json"), *files],
                  [*common, "--output_dir", str(calib), "--max_epochs", "3", "--val_interval", "1000",
                   "--mlflow_enabled", "False"]), out / "calibration.log")
        per_epoch = sorted(_epoch_seconds(out / "calibration.log"))[1] if not quick else 1.0
        shutil.rmtree(calib, ignore_errors=True)
        epochs = 2 if quick else max(20, int(minutes * 60 / per_epoch))
        val_interval = max(1, epochs // 20)
        cmd = _cmd("training", [str(CONFIGS / "train.json"), *files],
                   [*common, "--output_dir", str(out), "--max_epochs", str(epochs), "--val_interval", str(val_interval),
                    "--time_limit_s", str(int(minutes * 60 * 1.15) if not quick else 600),
                    "--mlflow_run_name", f"train_{backbone}"])
        seconds = _run(cmd, out / "train.log")
        done = len(_epoch_seconds(out / "train.log"))
        summary = {"backbone": backbone, "planned_epochs": epochs, "epochs": done, "seconds": round(seconds, 1),
                   "seconds_per_epoch_calibrated": round(per_epoch, 3), "command": " ".join(cmd)}
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    ckpt = out / "models" / "model.pt"
    test = TEST if not quick else [22]
    result = dict(summary)
    result["val"] = _evaluate(files, common, out, ckpt, VAL if not quick else [20], "val")
    result["test"] = _evaluate(files, common, out, ckpt, test, "test")
    return result


def table(results: dict) -> str:
    lines = ["| backbone | train min | epochs | val macro F1 | val kappa | test macro F1 | test macro AP | test kappa | test accuracy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        v, t = r["val"], r["test"]
        lines.append(f"| {name} | {r['seconds'] / 60:.1f} | {r['epochs']} | {v['macro_f1']:.3f} | {v['kappa']:.3f} | "
                     f"{t['macro_f1']:.3f} | {t['macro_ap']:.3f} | {t['kappa']:.3f} | {t['accuracy']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget per backbone (wall clock)")
    parser.add_argument("--backbones", nargs="+", default=list(DEFAULT_BACKBONES))
    parser.add_argument("--output_dir", default=str(ROOT / "runs" / "organelle_backbones"))
    parser.add_argument("--quick", action="store_true", help="2 epochs on 2 slices (numbers meaningless)")
    parser.add_argument("--fresh", action="store_true", help="retrain even where a finished run exists")
    args = parser.parse_args(argv)
    data = data_root("epfl_ca1_multiclass")
    if not data.is_dir():
        print(f"EPFL CA1 data not found at {data} (set CSEG_DATA_DIR)", file=sys.stderr)
        return 2
    results = {}
    for backbone in args.backbones:
        results[backbone] = run_backbone(backbone, args.minutes, Path(args.output_dir) / backbone, args.quick, args.fresh)
    payload = {"split": {"train": TRAIN, "val": VAL, "test": TEST}, "minutes_budget": args.minutes,
               "quick": args.quick, "threads": os.cpu_count(), "backbones": results}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(out)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
