"""Pictures of one instance run: the validation crop segmented alone vs the whole volume as context.

Reads what ``scripts/experiments/instance_segmentation.py`` left in a data set's run folder
(``eval_multicut/*_labels.tif``: the validation crop segmented alone; ``eval_in_context/*_labels.tif``:
the whole volume) and writes two PNGs:

* ``NAME_validation_multicut.png``: a plane of the validation crop, top row the crop alone,
  bottom row in context (image | instances | ground truth each);
* ``NAME_f1_vs_iou_context.png``: F1 against the IoU threshold for both.

Usage::

    .venv/bin/python scripts/experiments/instance_context_figures.py --name nuclei \\
        --run runs/instance_segmentation_nuclei_masked/nuclei \\
        --out bundles/cell_instance_boundary_segmentation_3d/docs/images
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from instance_segmentation import KINDS, _data_dir  # noqa: E402

from cseg_monai.data.datasets.instances import SPLITS, datalist, load_item  # noqa: E402


def _labels(folder: Path) -> np.ndarray:
    import tifffile

    files = sorted(folder.glob("*_labels.tif"))
    if len(files) != 1:
        raise FileNotFoundError(f"{folder}: expected one *_labels.tif, found {len(files)} (run instance_segmentation.py first)")
    return tifffile.imread(files[0]).astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, choices=[k for k in KINDS if "z" in SPLITS[KINDS[k]]["val"]])
    parser.add_argument("--run", required=True, help="the data set's folder under --runs of instance_segmentation.py")
    parser.add_argument("--out", required=True, help="folder of the PNGs")
    parser.add_argument("--plane", type=int, default=None, help="plane of the validation crop (default: the middle)")
    args = parser.parse_args(argv)

    from PIL import Image
    from skimage.segmentation import relabel_sequential

    from cseg_monai.metrics.instances import instance_scores
    from cseg_monai.visualisation import f1_iou_plot, instance_overlay_picture

    z0, z1 = SPLITS[KINDS[args.name]]["val"]["z"]
    image, truth, _ = load_item(datalist(KINDS[args.name], _data_dir(), None)[0])
    run = Path(args.run)
    alone = _labels(run / "eval_multicut")
    context = _labels(run / "eval_in_context")
    if alone.shape != truth[z0:z1].shape or context.shape != truth.shape:
        raise ValueError(f"{run}: prediction shapes {alone.shape} / {context.shape} do not fit the data {truth.shape}")
    t = relabel_sequential(truth[z0:z1])[0]
    preds = {"crop alone": relabel_sequential(alone)[0], "whole volume as context": relabel_sequential(context[z0:z1])[0]}
    plane = (z1 - z0) // 2 if args.plane is None else args.plane
    if not 0 <= plane < z1 - z0:
        raise ValueError(f"--plane must lie in [0, {z1 - z0}), got {plane}")
    sl = slice(plane, plane + 1)
    rows = [instance_overlay_picture(image[:, z0:z1][:, sl], p[None, sl], t[None, sl]) for p in preds.values()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    Image.fromarray(np.concatenate([rows[0], gap, rows[1]])).save(out / f"{args.name}_validation_multicut.png")
    curves = {name: instance_scores(t, p) for name, p in preds.items()}
    f1_iou_plot(curves, out / f"{args.name}_f1_vs_iou_context.png", title=f"{args.name}: validation z {z0}-{z1 - 1}")
    for name, s in curves.items():
        print(f"{args.name} {name}: F1@0.5 {s['f1'][s['thresholds'].index(0.5)]:.3f}, {s['n_pred']} predicted / {s['n_true']} true")
    print(f"wrote {out / f'{args.name}_validation_multicut.png'} and {out / f'{args.name}_f1_vs_iou_context.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
