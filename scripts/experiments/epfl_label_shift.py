"""How exact must an organelle prediction be? The EPFL CA1 ground truth scored against itself, shifted.

The organelle issue asks for macro F1 >= 0.90 and Cohen's kappa >= 0.92 on EPFL CA1. Thin
classes (membranes, mitochondrial boundaries, synaptic densities, vesicles) are a few pixels
wide, so a prediction that is right everywhere but one pixel off loses much of their overlap.
This script measures that: it scores each slice's label map against the same map shifted by
one or two pixels (the bundle's metric code, pooled over the slices, a border of 4 pixels left
out so that nothing wraps around), which is what a perfect segmentation misregistered by that
much would score.

Usage::

    .venv/bin/python scripts/experiments/epfl_label_shift.py --json scripts/experiments/results/epfl_label_shift.json

Writes per shift: accuracy, macro F1, kappa and per-class F1, for the held-out slices 22-26
and for all 27 slices.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cseg_monai.common import ORGANELLE_CLASSES, data_root
from cseg_monai.data.datasets import epfl_ca1
from cseg_monai.metrics import classification_scores

ROOT = Path(__file__).resolve().parents[2]
SHIFTS = ((1, 0), (0, 1), (1, 1), (2, 0), (0, 2))
BORDER = 4
CLASSES = ORGANELLE_CLASSES


def data_dir() -> Path:
    """``$CSEG_DATA_DIR/epfl_ca1_multiclass`` or ``../shared/data/epfl_ca1_multiclass``."""
    return data_root("epfl_ca1_multiclass")


def shift_scores(labels: list[np.ndarray], dy: int, dx: int) -> dict:
    """Scores of the label maps against themselves shifted by ``(dy, dx)`` pixels, pooled over the maps.

    Example:
        >>> lab = np.zeros((16, 16), np.uint8); lab[:, 8:] = 1
        >>> round(shift_scores([lab], 0, 1)["accuracy"], 3)
        0.875
    """
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    truth = np.concatenate([lab[inner].ravel() for lab in labels])
    moved = np.concatenate([np.roll(lab, (dy, dx), axis=(0, 1))[inner].ravel() for lab in labels])
    onehot = np.eye(len(CLASSES), dtype=np.float32)[moved]
    s = classification_scores(onehot, truth.astype(np.int64), len(CLASSES))
    return {
        "accuracy": float(s["accuracy"]),
        "macro_f1": float(s["macro_f1"]),
        "kappa": float(s["kappa"]),
        "per_class_f1": {c: float(f) for c, f in zip(CLASSES, s["per_class_f1"])},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--dataset_dir", default=None, help="EPFL CA1 folder (default: ../shared/data/epfl_ca1_multiclass)")
    args = parser.parse_args(argv)
    root = Path(args.dataset_dir) if args.dataset_dir else data_dir()
    if not root.is_dir():
        print(f"EPFL CA1 data not found at {root}: pass --dataset_dir or set CSEG_DATA_DIR", file=sys.stderr)
        return 2
    ids = epfl_ca1.list_slices(root)
    labels = [epfl_ca1.load_slice(root, i)[1] for i in ids]
    result = {"border_px": BORDER, "slices": {"held_out_22_26": [22, 23, 24, 25, 26], "all": list(range(len(ids)))}, "shifts": {}}
    for dy, dx in SHIFTS:
        key = f"{dy},{dx}"
        result["shifts"][key] = {
            "held_out_22_26": shift_scores([labels[i] for i in range(22, 27)], dy, dx),
            "all": shift_scores(labels, dy, dx),
        }
        r = result["shifts"][key]["held_out_22_26"]
        per_class = " / ".join(f"{v:.3f}" for v in r["per_class_f1"].values())
        print(f"shift ({dy}, {dx}) px, slices 22-26: macro F1 {r['macro_f1']:.3f}, kappa {r['kappa']:.3f}, "
              f"accuracy {r['accuracy']:.3f}; per class {per_class}")  # fmt: skip
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
