"""The pretraining bundle's inference: how well does the pretext work on a user's own images?

A pretrained backbone transfers best to images like those it was pretrained on. :func:`pretext_report`
runs the pretext network over the grid patches of each file (masked as in training), writes a
picture of the first patches (masked input | reconstruction | original) per file and one JSON
with each file's pretext error, next to the error of a baseline with no network (the mean of the
voxels around the masked region for centre-region regression, the patch mean for a VAE), so a
user sees whether the network does better than interpolation on their data. For masked image
modelling (a :class:`~cseg_monai.transforms.MaskCubesd` mask) the error is over the hidden cubes
only and the baseline is the masked input itself (what dropout or shuffling left there); ``gain``
is ``1 - error / baseline``. Files that fail are reported and skipped
(:class:`~cseg_monai.workflows.folder_run.FileReport`).

Example:
    In ``inference.json``::

        "run": ["$cseg_monai.workflows.pretext_report(@network, @datalist, @output_dir, @net_patch_size, @mask_transform, @load_item, inferer=@inferer)"]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cseg_monai.common.pretext import masked_error
from cseg_monai.data.patch_sampling import CoveringPatchDataset
from cseg_monai.data.writers import atomic_path, output_stem
from cseg_monai.transforms.pretext import MaskCentreRegiond, MaskCubesd, centre_region_slices
from cseg_monai.visualisation import reconstruction_picture, save_png
from cseg_monai.workflows.folder_run import FileReport

__all__ = ["SCORES_NAME", "baseline_prediction", "pretext_report"]

#: The per-file scores file of :func:`pretext_report`.
SCORES_NAME = "pretext_scores.json"


def baseline_prediction(masked: np.ndarray, target_shape: tuple[int, ...], radius: int | None) -> np.ndarray:
    """A prediction with no network: the mean of the one-voxel shell around the masked centre
    region, for each of its voxels (centre-region targets), or the patch mean everywhere (patch targets).

    Example:
        >>> patch = np.arange(25, dtype=np.float32).reshape(1, 5, 5); patch[0, 1:4, 1:4] = 0
        >>> float(baseline_prediction(patch, (9, 1, 1), 1)[0, 0, 0])  # the 16 border values average 12
        12.0
    """
    if radius is None or len(target_shape) == masked.ndim and tuple(target_shape) == masked.shape:
        return np.full(target_shape, float(masked.mean()), np.float32)
    inner = centre_region_slices(masked.shape[1:], radius)
    try:
        outer = centre_region_slices(masked.shape[1:], radius + 1)
    except ValueError:  # the region reaches the border: its own border ring is all there is
        outer = tuple(slice(0, n) for n in masked.shape[1:])
    shell = np.ones(masked.shape[1:], bool)
    shell[inner] = False
    ring = masked[(slice(None), *outer)][:, shell[outer]]
    return np.full(target_shape, float(ring.mean()), np.float32)


def _psnr(mse: float) -> float:
    return float(10.0 * math.log10(1.0 / mse)) if mse > 0 else float("inf")


def pretext_report(
    network: nn.Module,
    items: Sequence[dict[str, Any]],
    output_dir: str | os.PathLike,
    patch_size: Sequence[int],
    mask_transform: MaskCentreRegiond | MaskCubesd,
    load: Callable[[dict[str, Any]], np.ndarray],
    inferer: Callable[[torch.Tensor, nn.Module], Any] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    progress: bool | None = None,
    normalise: Sequence[Callable[[dict[str, Any]], dict[str, Any]]] = (),
) -> dict[str, Any]:
    """Score the pretext on every file of ``items``; write pictures, ``pretext_scores.json`` and ``run_summary.json``.

    Args:
        network: the pretext network (weights loaded).
        items: pool items (:func:`cseg_monai.data.datasets.unlabelled.datalist`).
        output_dir: where the files go.
        patch_size: the network's patch.
        mask_transform: the training's masking (same radius and target, or the same cubes; give a
            ``MaskCubesd`` a ``seed`` for a report that does not move between runs).
        load: item -> ``(C, *spatial)`` array (the training's intensity scaling).
        inferer: ``inferer(inputs, network)``; default the network's first output.
        device: where the network runs.
        batch_size: patches per forward pass.
        progress: a bar over the files (default: when stderr is a terminal).
        normalise: the training's ``normalise_transforms``, applied to each patch before the mask.

    Returns:
        ``{file: {"n_patches", "mse", "psnr", "baseline_mse", "baseline_psnr", "picture"}}`` for the files written
        (masked image modelling: ``"mse"``, ``"baseline_mse"`` and ``"gain"`` over the hidden voxels, no PSNR:
        its patches are not scaled to [0, 1]).

    Raises:
        FolderRunError: after all files were tried, naming each one that failed.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = FileReport(out, total=len(items), progress=progress if progress is not None else os.isatty(2), desc="pretext")
    scores: dict[str, Any] = {}
    network = network.to(device).eval()
    for item in items:
        name = str(item.get("image"))
        with report.item(name) as record:
            patches = CoveringPatchDataset([item], patch_size, stride=patch_size, load=load, jitter=False, names=[name])
            cubes = isinstance(mask_transform, MaskCubesd)
            err, base, n, voxels, samples = 0.0, 0.0, 0, 0.0, []
            for start in range(0, len(patches), batch_size):
                batch = []
                for i in range(start, min(start + batch_size, len(patches))):
                    patch = patches[i]
                    for t in normalise:
                        patch = t(patch)
                    batch.append(mask_transform(patch))
                x = torch.as_tensor(np.stack([np.asarray(b["image"]) for b in batch])).to(device)
                y = np.stack([np.asarray(b["label"]) for b in batch])
                with torch.no_grad():
                    pred = inferer(x, network) if inferer is not None else network(x)
                    pred = (pred[0] if isinstance(pred, (tuple, list)) else pred).cpu().numpy()
                if cubes:  # summed over the hidden voxels, divided once at the end
                    target = torch.as_tensor(y)
                    total, count = masked_error(torch.as_tensor(pred), target)
                    err, voxels = err + float(total), voxels + float(count)
                    base += float(masked_error(x.cpu().float(), target)[0])
                else:
                    err += float(((pred - y) ** 2).reshape(len(batch), -1).mean(axis=1).sum())
                    radius = mask_transform.radius
                    base += float(sum(((baseline_prediction(np.asarray(b["image"]), y.shape[1:], radius) - t) ** 2).mean() for b, t in zip(batch, y)))
                n += len(batch)
                samples += [(np.asarray(b["image"]), p, t) for b, p, t in zip(batch, pred, y)][: 4 - len(samples)]
            picture = save_png(reconstruction_picture(samples), out / f"{output_stem(name)}_reconstruction.png")
            if cubes:
                mse, base_mse = err / max(voxels, 1.0), base / max(voxels, 1.0)
                row = {"n_patches": n, "mse": round(mse, 6), "baseline_mse": round(base_mse, 6),
                       "gain": round(1.0 - mse / base_mse, 4) if base_mse > 0 else None, "picture": picture.name}  # fmt: skip
            else:
                mse, base_mse = err / n, base / n
                row = {"n_patches": n, "mse": round(mse, 6), "psnr": round(_psnr(mse), 3),
                       "baseline_mse": round(base_mse, 6), "baseline_psnr": round(_psnr(base_mse), 3), "picture": picture.name}  # fmt: skip
            scores[name] = row
            record.update(row)
    with atomic_path(out / SCORES_NAME) as tmp:
        tmp.write_text(json.dumps(scores, indent=2) + "\n")
    report.finish()
    return scores
