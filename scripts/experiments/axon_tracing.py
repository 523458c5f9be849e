#!/usr/bin/env python
"""Tracing through serial sections, from true 2D profiles: Hungarian linking against greedy stitching, with and without anchors.

Part (a) of issue 19's study. Each volume's true ids are cut into per-section profiles (the
connected pieces of each id in each section, renumbered per section so that no id carries
over), and the profiles are traced back into 3D by

* ``greedy``: Cellpose's 3D stitching (IoU > 0.25 with the previous section's profile);
* ``hungarian``: :func:`cseg_monai.postprocessing.trace_sections` with its defaults;
* ``hungarian_anchors_5`` / ``_10``: the same with anchor seeds every 5 / 10 sections (one click
  per true object in its largest profile of that section, as a proofreader would place them).

Volumes: three tube phantoms (clean; two blank sections; a blank and two shifted sections),
gala's FIB-SEM neurons (50 planes as sections) and the PlantSeg ovule's cells (32 planes). Scores
(:func:`cseg_monai.metrics.tracing_scores`): link precision / recall / F1 over all profiles and
over profiles of 20 pixels or more (crumbs of a label image left out), splits, merges, expected
run length (sections), ARAND and VOI.

Every record is written to ``--json`` as soon as it is measured; a rerun skips those already
there (``--redo`` measures them again). ``--picture`` draws six sections of the shifted phantom,
traced (top) and true (bottom) ids.

Part (b), ``--end_to_end CKPT``: the phantoms' raw sections through the axon tracing bundle's
D-LinkNet (``bundles/em_axon_tracing``, weights CKPT, its inference settings: 1st-99th
percentile scaling, 128 x 128 windows, profiles by threshold 0.5, erosion 1, at least 30 pixels, grown by 1),
then the same predicted profiles traced by ``hungarian`` and stitched by ``greedy``
(records ``SET/e2e_hungarian`` and ``SET/e2e_greedy``). The phantoms' seeds (11-13) are not
among the training phantoms' (0-3) or the validation phantom's (1000).

Part (b) on real volumes, ``--real_end_to_end SET=CKPT``: gala and the ovule cut along X into
a train (first half), a validation (next eighth) and a test part (the rest; :data:`SPLIT`).
``--write_training_folders DIR`` writes the train and validation parts as the bundle's folder
data set; the bundle trains on them (command in the bundle docs); the test part, which no
training or tuning saw, is then traced from the predicted profiles with the bundle's profile
settings and with those of a small grid that trace best on the validation part
(records ``SET/e2e_test_{default,tuned}_{hungarian,greedy}``).

Usage::

    .venv/bin/python scripts/experiments/axon_tracing.py --json scripts/experiments/results/axon_tracing.json \\
        --picture scripts/experiments/results/axon_tracing_tracks.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from monai.inferers import SliceInferer
from monai.transforms import ScaleIntensityRangePercentiles
from scipy import ndimage

from cseg_monai.common import data_root
from cseg_monai.data.datasets.axon_sections import interior_target
from cseg_monai.data.tube_phantom import make_tube_phantom
from cseg_monai.data.writers import atomic_path, write_tiff
from cseg_monai.metrics.instances import instance_scores
from cseg_monai.metrics.membrane import dice_score
from cseg_monai.metrics.tracing import section_profiles_of, tracing_scores
from cseg_monai.networks import DLinkNet
from cseg_monai.postprocessing.section_tracking import section_profiles, stitch_greedy, trace_sections
from cseg_monai.visualisation import save_png, track_picture
from cseg_monai.workflows.large_volume import load_weights

PHANTOMS = {
    "phantom_clean": {"seed": 11},
    "phantom_gaps": {"seed": 12, "missing_sections": (12, 27)},
    "phantom_gaps_shifts": {"seed": 13, "missing_sections": (18,), "shifted_sections": (10, 25)},
}
REAL = {"gala_fibsem": ("gala_fibsem/train-gt.lzf.h5", "stack"), "plantseg_ovule": ("plantseg/sample_ovule.h5", "label")}
REAL_RAW = {"gala_fibsem": ("gala_fibsem/train-image.h5", "stack"), "plantseg_ovule": ("plantseg/sample_ovule.h5", "raw")}
#: the parts of a real volume along X (fractions of its width): the network trains and is checked on the first two only
SPLIT = {"train": (0.0, 0.5), "val": (0.5, 0.625), "test": (0.625, 1.0)}
METHODS = ("greedy", "hungarian", "hungarian_anchors_5", "hungarian_anchors_10")
KEYS = ("link_precision", "link_recall", "link_f1", "splits", "merges", "expected_run_length", "arand", "voi", "n_true", "n_pred")


def load_set(name: str, raw: bool = True) -> tuple[np.ndarray | None, np.ndarray] | None:
    """``(raw sections, true ids)`` of a set (the raw sections of a real set only with ``raw``,
    else None), or None when its data is absent."""
    if name in PHANTOMS:
        image, truth = make_tube_phantom((40, 192, 192), **PHANTOMS[name])
        return image, truth.astype(np.int64)
    arrays: list[np.ndarray | None] = [] if raw else [None]
    for path, dataset in ([REAL_RAW[name]] if raw else []) + [REAL[name]]:
        file = data_root() / path
        if not file.is_file():
            return None
        with h5py.File(file, "r") as f:
            arrays.append(f[dataset][:])
    return arrays[0], arrays[1].astype(np.int64)


def split_parts(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """``{part: (raw, ids)}`` of a real set cut along X (:data:`SPLIT`); None when the data is absent."""
    loaded = load_set(name)
    if loaded is None:
        return None
    image, truth = loaded
    cuts = {part: [round(f * truth.shape[-1]) for f in span] for part, span in SPLIT.items()}
    return {part: (image[..., lo:hi], truth[..., lo:hi]) for part, (lo, hi) in cuts.items()}


def write_training_folders(root: Path) -> list[Path]:
    """``ROOT/SET/images|labels/{a_train,b_val}.tif`` for each real set: the bundle's folder data set
    (``train_indices [0]``, ``val_indices [1]``); the test part is not written."""
    written = []
    for name in REAL:
        parts = split_parts(name)
        if parts is None:
            print(f"{name}: data absent under {data_root()}, skipped", file=sys.stderr)
            continue
        for stem, part in (("a_train", "train"), ("b_val", "val")):
            write_tiff(root / name / "images" / f"{stem}.tif", parts[part][0])
            write_tiff(root / name / "labels" / f"{stem}.tif", parts[part][1].astype(np.uint32))
        written.append(root / name)
    return written


def shuffled_profiles(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per-section profiles with ids that do not carry over between sections."""
    profiles = section_profiles_of(truth)
    rng = np.random.default_rng(seed)
    for z in range(profiles.shape[0]):
        n = int(profiles[z].max())
        lut = np.concatenate([[0], rng.permutation(n) + 1])
        profiles[z] = lut[profiles[z]]
    return profiles


def anchors_every(truth: np.ndarray, every: int) -> list[tuple[int, float, float, int]]:
    """One anchor per true object in sections 0, every, 2 every ...: the innermost pixel of its largest profile."""
    out = []
    for z in range(0, truth.shape[0], every):
        pieces = section_profiles_of(truth[z : z + 1])[0]
        best: dict[int, tuple[int, int]] = {}
        for piece in range(1, int(pieces.max()) + 1):
            mask = pieces == piece
            obj, area = int(truth[z][mask][0]), int(mask.sum())
            if area > best.get(obj, (0, 0))[0]:
                best[obj] = (area, piece)
        for obj, (_, piece) in best.items():
            depth = ndimage.distance_transform_edt(pieces == piece)
            y, x = np.unravel_index(int(depth.argmax()), depth.shape)
            out.append((z, float(y), float(x), obj))
    return out


#: the bundle's profile settings (``inference.json``: threshold, erosion, smallest profile, growth back; pixels)
PROFILE_SETTINGS = {"threshold": 0.5, "erode": 1.0, "min_area": 30.0, "dilate": 1.0}
#: the grid tuned on a real set's validation part (``--real_end_to_end``)
TUNING_GRID = [{"threshold": t, "erode": e, "min_area": 30.0, "dilate": e} for t in (0.3, 0.5, 0.7) for e in (1.0, 2.0, 3.0)]


def load_network(ckpt: Path) -> torch.nn.Module:
    """The axon tracing bundle's network with the weights ``ckpt``."""
    return load_weights(DLinkNet(encoder="resnet18", width=32), ckpt).float().eval()


def interior_probability(image: np.ndarray, net: torch.nn.Module) -> np.ndarray:
    """The axon tracing bundle's network (:func:`load_network`) on raw sections: ``(Z, Y, X)`` interior probability."""
    x = ScaleIntensityRangePercentiles(1.0, 99.0, 0.0, 1.0, clip=True)(torch.as_tensor(image, dtype=torch.float32))[None, None]
    with torch.no_grad():
        return torch.sigmoid(SliceInferer(roi_size=(128, 128), spatial_dim=0, sw_batch_size=4, overlap=0.25, mode="gaussian")(x, net))[0, 0].numpy()


def profiles_of(prob: np.ndarray, settings: dict[str, float] = PROFILE_SETTINGS) -> np.ndarray:
    """Per-section profiles cut from an interior probability with ``settings`` (:data:`PROFILE_SETTINGS`)."""
    return np.stack([section_profiles(p, settings["threshold"], erode_um=settings["erode"], min_area_um2=settings["min_area"],
                                      dilate_um=settings["dilate"]) for p in prob])  # fmt: skip


def predicted_profiles(image: np.ndarray, ckpt: Path) -> np.ndarray:
    """Per-section profiles predicted from raw sections by the axon tracing bundle's network and settings."""
    return profiles_of(interior_probability(image, load_network(ckpt)))


def _scores(truth: np.ndarray, ids: np.ndarray, sections: int) -> dict[str, float]:
    s = tracing_scores(truth, ids.astype(np.int64))
    return {k: round(float(v), 4) for k, v in s.items() if k in KEYS} | {"sections": sections}


def real_end_to_end(name: str, parts: dict[str, tuple[np.ndarray, np.ndarray]], ckpt: Path, picture: Path | None = None) -> dict[str, dict]:
    """Part (b) on a real set (``parts``: :func:`split_parts`): the network trained on its ``train`` part (weights ``ckpt``) on its
    ``test`` part, profiles cut with the bundle's settings and with the settings of
    :data:`TUNING_GRID` that trace best (link F1, Hungarian) on its ``val`` part; each traced
    by Hungarian linking and stitched greedily. Records ``SET/e2e_test_{default,tuned}_{hungarian,greedy}``;
    ``picture``: a PNG of six test sections, traced with the bundle's settings (top) and true (bottom)."""
    net = load_network(ckpt)
    val_image, val_truth = parts["val"]
    val_prob = interior_probability(val_image, net)
    tuned = max(TUNING_GRID, key=lambda g: tracing_scores(val_truth, trace_sections(profiles_of(val_prob, g))[0].astype(np.int64))["link_f1"])
    image, truth = parts["test"]
    prob = interior_probability(image, net)
    dice = dice_score(prob > 0.5, interior_target(truth) > 0)
    true_profiles = section_profiles_of(truth)
    records: dict[str, dict] = {}
    for label, settings in (("default", PROFILE_SETTINGS), ("tuned", tuned)):
        if label == "tuned" and settings == PROFILE_SETTINGS:  # the validation part chose the bundle's settings
            records.update({f"{name}/e2e_test_tuned_{m}": records[f"{name}/e2e_test_default_{m}"] for m in ("hungarian", "greedy")})
            continue
        profiles = profiles_of(prob, settings)
        # how well the profiles themselves match the true ones, section by section (F1 at IoU 0.5), before any linking
        per_section = [instance_scores(true_profiles[z][None].astype(np.int64), profiles[z][None].astype(np.int64), thresholds=(0.5,))["f1"][0]
                       for z in range(truth.shape[0])]  # fmt: skip
        quality = {"interior_dice": round(dice, 4), "profile_f1_mean": round(float(np.mean(per_section)), 4)}
        for method, ids in (("hungarian", trace_sections(profiles)[0]), ("greedy", stitch_greedy(profiles))):
            records[f"{name}/e2e_test_{label}_{method}"] = _scores(truth, ids, int(truth.shape[0])) | quality | {"profiles": settings}
            if picture is not None and label == "default" and method == "hungarian":
                save_png(track_picture(image, ids, truth), picture)
    return records


def run_method(method: str, truth: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    if method == "greedy":
        return stitch_greedy(profiles)
    anchors = anchors_every(truth, int(method.rsplit("_", 1)[1])) if "anchors" in method else None
    return trace_sections(profiles, anchors=anchors)[0]


def _save(path: Path, results: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True, type=Path, help="results (records already there are skipped)")
    parser.add_argument("--sets", nargs="+", default=list(PHANTOMS) + list(REAL), choices=list(PHANTOMS) + list(REAL))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--picture", type=Path, help="PNG of the shifted phantom: traced (top) and true (bottom) ids")
    parser.add_argument("--redo", action="store_true", help="measure records already in the JSON again")
    parser.add_argument("--end_to_end", type=Path, help="weights of the axon tracing bundle: part (b) on the phantoms")
    parser.add_argument("--write_training_folders", type=Path, help="write each real set's train and val parts as the bundle's folder data set here")
    parser.add_argument("--real_end_to_end", nargs="+", metavar="SET=CKPT", help="part (b) on a real set's test part, weights trained on its train part")
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text()) if args.json.is_file() else {"records": {}}
    results["command"] = "python scripts/experiments/axon_tracing.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for name in args.sets:
        loaded: tuple | None = None
        for method in args.methods:
            key = f"{name}/{method}"
            if key in results["records"] and not args.redo:
                continue
            loaded = loaded or load_set(name, raw=False)
            if loaded is None:
                print(f"{name}: data absent under {data_root()}, skipped", file=sys.stderr)
                break
            _, truth = loaded
            profiles = shuffled_profiles(truth)
            tic = time.perf_counter()
            ids = run_method(method, truth, profiles).astype(np.int64)
            seconds = time.perf_counter() - tic
            every = {k: round(float(v), 4) for k, v in tracing_scores(truth, ids).items() if k in KEYS}
            big = tracing_scores(truth, ids, min_profile_area=20)
            record = {**every, "link_f1_20px": round(big["link_f1"], 4), "link_recall_20px": round(big["link_recall"], 4),
                      "sections": int(truth.shape[0]), "seconds": round(seconds, 3)}  # fmt: skip
            results["records"][key] = record
            _save(args.json, results)
            print(key, json.dumps(record), flush=True)
    if args.end_to_end is not None:
        for name in [n for n in args.sets if n in PHANTOMS]:
            keys = [f"{name}/e2e_hungarian", f"{name}/e2e_greedy"]
            if all(k in results["records"] for k in keys) and not args.redo:
                continue
            image, truth = load_set(name)
            profiles = predicted_profiles(image, args.end_to_end)
            for key, ids in zip(keys, (trace_sections(profiles)[0], stitch_greedy(profiles))):
                results["records"][key] = _scores(truth, ids, int(truth.shape[0]))
                _save(args.json, results)
                print(key, json.dumps(results["records"][key]), flush=True)
    for item in args.real_end_to_end or []:
        name, _, ckpt = item.partition("=")
        if name not in REAL or not ckpt:
            parser.error(f"--real_end_to_end takes SET=CHECKPOINT with SET one of {list(REAL)}, got {item!r}")
        if any(k.startswith(f"{name}/e2e_test_") for k in results["records"]) and not args.redo:
            continue
        parts = split_parts(name)
        if parts is None:
            print(f"{name}: data absent under {data_root()}, skipped", file=sys.stderr)
            continue
        picture = args.json.parent / f"axon_tracing_{name}_e2e_test.png"
        for key, record in real_end_to_end(name, parts, Path(ckpt), picture).items():
            results["records"][key] = record
            print(key, json.dumps(record), flush=True)
        _save(args.json, results)
    if args.write_training_folders is not None:
        for folder in write_training_folders(args.write_training_folders):
            print(f"training folder: {folder} (train_indices [0], val_indices [1])")
    if args.picture is not None:
        image, truth = load_set("phantom_gaps_shifts")
        ids = run_method("hungarian", truth, shuffled_profiles(truth))
        save_png(track_picture(image, ids, truth, sections=[8, 10, 12, 17, 18, 19]), args.picture)
        print(f"picture: {args.picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
