"""Train the ISBI 2012 membrane bundle (its default config, or with ``--configs`` overrides) on slices 0-19 and score slices 20-23.

Reports the ISBI 2012 scores (V_rand and V_info, with and without boundary thinning, best
over thresholds of the membrane probability), pixel error and membrane Dice of the best
checkpoint on the validation slices 20-23 (never trained on), and the wall time. Writes one
JSON file; ``--install`` copies the best checkpoint to the bundle's ``models/model.pt``.

Usage::

    .venv/bin/python scripts/benchmarks/isbi2012_train_eval.py --json results/isbi2012_train_eval.json
    .venv/bin/python scripts/benchmarks/isbi2012_train_eval.py --quick --json /tmp/quick.json   # smoke run

The data comes from ``../shared/data/isbi2012`` (or ``$CSEG_DATA_DIR/isbi2012``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from cseg_monai.common import data_root
from cseg_monai.workflows import bundle_workflow

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "isbi2012_em_membrane_segmentation"


def _data_dir() -> Path:
    return data_root("isbi2012")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--output_dir", default=str(ROOT / "runs" / "isbi2012_train_eval"))
    parser.add_argument("--time_limit_s", type=float, default=43 * 60, help="hard stop of the training")
    parser.add_argument("--quick", action="store_true", help="a 2-epoch smoke run (numbers meaningless)")
    parser.add_argument("--install", action="store_true", help="copy the best checkpoint to the bundle's models/")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", nargs="*", default=[], help="override files of the bundle on top of train.json (e.g. dlinknet.json)")
    parser.add_argument("--max_epochs", type=int, help="train this many epochs instead of the config's")
    args = parser.parse_args(argv)
    if args.install and args.configs:
        parser.error("--install copies to models/model.pt, the default network's weights: not with --configs")

    data = _data_dir()
    if not (data / "train" / "image").is_dir():
        print(f"ISBI 2012 data not found at {data}: set CSEG_DATA_DIR or place it in ../shared/data", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    if out.exists():
        shutil.rmtree(out)
    common = {"dataset_dir": str(data), "output_dir": str(out), "bundle_root": str(BUNDLE)}
    train_override = dict(common, time_limit_s=args.time_limit_s, progress_bar=False)
    if args.max_epochs:
        train_override.update(max_epochs=args.max_epochs)
    if args.quick:
        train_override.update(max_epochs=2, val_interval=1)

    t0 = time.perf_counter()
    wf = bundle_workflow(BUNDLE, ["train.json", *args.configs], "train", **train_override)
    wf.initialize()
    wf.run()
    trainer = wf.parser.get_parsed_content("train#trainer")
    epochs_done, iterations_done = int(trainer.state.epoch), int(trainer.state.iteration)
    wf.finalize()
    train_s = time.perf_counter() - t0

    best = out / "models" / "model.pt"
    t1 = time.perf_counter()
    ev = bundle_workflow(BUNDLE, ["train.json", *args.configs, "evaluate.json"], "eval", ckpt_path=str(best), **common)
    ev.initialize()
    ev.run()
    evaluator = ev.parser.get_parsed_content("validate#evaluator")
    metrics = {k: float(v) for k, v in evaluator.state.metrics.items()}
    thresholds = {
        name: float(m.best_threshold)
        for name, m in {**ev.parser.get_parsed_content("validate#key_metric"),
                        **ev.parser.get_parsed_content("validate#additional_metrics")}.items()
        if isinstance(getattr(m, "best_threshold", None), float)
    }
    ev.finalize()
    eval_s = time.perf_counter() - t1

    result = {
        "benchmark": "isbi2012_train_eval",
        "config": "bundles/isbi2012_em_membrane_segmentation/configs/train.json" + "".join(f" + {c}" for c in args.configs),
        "train_slices": "0-19",
        "validation_slices": "20-23",
        "quick": args.quick,
        "torch_threads": args.threads,
        "epochs": epochs_done,
        "iterations": iterations_done,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "metrics": metrics,
        "best_thresholds": thresholds,
        "checkpoint": str(best),
        "command": "python " + " ".join([str(Path(__file__).relative_to(ROOT))] + (argv or sys.argv[1:])),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    for name in ("val_vrand_thinned", "val_vinfo_thinned", "val_vrand", "val_vinfo", "val_pixel_error", "val_dice"):
        if name in metrics:
            print(f"{name}: {metrics[name]:.4f}")
    if args.install:
        (BUNDLE / "models").mkdir(exist_ok=True)
        shutil.copyfile(best, BUNDLE / "models" / "model.pt")
        print(f"installed {best} -> {BUNDLE / 'models' / 'model.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
