"""Synaptic cleft scores: the CREMI challenge's distances in nm, voxel F1 and per-cleft detection.

The CREMI cleft scores (cremi.org, "Synaptic Cleft Detection"; ``cremi_python``'s ``Clefts``)
compare a predicted cleft mask with the ground truth through Euclidean distance transforms in
physical units (the voxel size, e.g. 40 x 4 x 4 nm for CREMI or 50 x 4.6 x 4.6 nm for the
Drosophila VNC stack):

* ``adf``: average distance of the predicted cleft voxels to the nearest ground-truth cleft voxel
  (false detections far from any cleft cost the more, the farther they are);
* ``adgt``: average distance of the ground-truth cleft voxels to the nearest predicted one
  (missed clefts);
* ``cremi_score = (adf + adgt) / 2`` (lower is better);
* ``fp`` / ``fn``: predicted voxels farther than ``threshold_nm`` (200 nm) from the ground truth,
  ground-truth voxels farther than it from the prediction.

Added here: voxel precision / recall / F1, and per-cleft detection: the 26-connected components
of both masks, a predicted component counting as a true detection when it overlaps a
ground-truth cleft and a ground-truth cleft as found when a predicted component overlaps it
(``detection_precision``, ``detection_recall``, ``detection_f1``; components smaller than
``min_size`` voxels are dropped from the prediction first).

Empty masks: with no predicted voxel, ``adf`` is 0 and ``adgt`` infinite (so is the CREMI score)
unless the ground truth is empty too (all 0); with no ground-truth voxel, ``adf`` is infinite.

Example:
    >>> gt = np.zeros((1, 1, 10), bool); gt[0, 0, 2] = True
    >>> pred = np.zeros_like(gt); pred[0, 0, 5] = True  # 3 voxels of 4 nm away
    >>> s = cremi_cleft_scores(pred, gt, (40.0, 4.0, 4.0))
    >>> s["adf"], s["adgt"], s["cremi_score"], s["fp"], s["voxel_f1"]
    (12.0, 12.0, 12.0, 0, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from scipy import ndimage

from cseg_monai.common.caching import ArrayCache
from cseg_monai.metrics._tensors import channel_first_pairs

__all__ = ["cremi_cleft_scores", "CremiCleftMetric", "CLEFT_SCORES"]

#: what :func:`cremi_cleft_scores` returns, and which are errors (lower is better).
CLEFT_SCORES: dict[str, bool] = {
    "cremi_score": True, "adf": True, "adgt": True, "fp": True, "fn": True,
    "voxel_precision": False, "voxel_recall": False, "voxel_f1": False,
    "detection_precision": False, "detection_recall": False, "detection_f1": False,
}  # fmt: skip
#: the bundle's five cleft metrics score the same masks: the first computes the distance transforms, the others hit this
_SCORE_CACHE = ArrayCache(size=8)


def _mask(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D or 3D mask, got shape {arr.shape}")
    if arr.dtype != bool:
        values = np.unique(arr)
        if values.size > 2 or not np.isin(values, (0, 1)).all():
            raise ValueError(f"{name} must be a 0/1 mask; got values {values[:8].tolist()} (threshold probabilities, or map the cleft label to 1)")
    return arr.astype(bool)


def _distance_to(mask: np.ndarray, voxel: tuple[float, ...]) -> np.ndarray:
    """Distance (nm) of every voxel to the nearest voxel of ``mask`` (which must not be empty)."""
    return ndimage.distance_transform_edt(~mask, sampling=voxel)


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def cremi_cleft_scores(
    pred_mask: Any,
    gt_mask: Any,
    voxel_size_nm: Sequence[float],
    threshold_nm: float = 200.0,
    min_size: int = 0,
) -> dict[str, float]:
    """The CREMI cleft scores, voxel F1 and per-cleft detection of one volume (see the module docstring).

    Args:
        pred_mask: predicted clefts, 0/1 or bool, ``(Z, Y, X)`` (or ``(Y, X)``).
        gt_mask: ground-truth clefts, the same shape.
        voxel_size_nm: the voxel size in nm, one per axis (``(Z, Y, X)``).
        threshold_nm: the distance beyond which a voxel counts in ``fp`` / ``fn``.
        min_size: predicted components smaller than this many voxels are dropped first.

    Returns:
        ``adf``, ``adgt``, ``cremi_score`` (nm), ``fp``, ``fn`` (voxel counts), ``voxel_precision``,
        ``voxel_recall``, ``voxel_f1``, ``detection_precision``, ``detection_recall``,
        ``detection_f1``, ``n_pred_clefts``, ``n_gt_clefts``.

    Raises:
        ValueError: shapes differ, not masks, or a voxel size that is not positive per axis.
    """
    pred, gt = _mask("pred_mask", pred_mask), _mask("gt_mask", gt_mask)
    if pred.shape != gt.shape:
        raise ValueError(f"pred_mask {pred.shape} and gt_mask {gt.shape} must have the same shape")
    voxel = tuple(float(v) for v in voxel_size_nm)
    if len(voxel) != pred.ndim or min(voxel) <= 0 or not np.isfinite(voxel).all():
        raise ValueError(f"voxel_size_nm must be {pred.ndim} positive sizes in nm, got {tuple(voxel_size_nm)}")
    if threshold_nm < 0:
        raise ValueError(f"threshold_nm must be >= 0, got {threshold_nm}")
    structure = np.ones((3,) * pred.ndim, bool)
    pred_cc, n_pred = ndimage.label(pred, structure)
    if min_size > 1 and n_pred:
        sizes = np.bincount(pred_cc.ravel())
        keep = sizes >= min_size
        keep[0] = False
        pred = keep[pred_cc]
        pred_cc, n_pred = ndimage.label(pred, structure)
    gt_cc, n_gt = ndimage.label(gt, structure)
    n_p, n_g = int(pred.sum()), int(gt.sum())

    if n_p and n_g:
        to_gt, to_pred = _distance_to(gt, voxel), _distance_to(pred, voxel)
        adf, adgt = float(to_gt[pred].mean()), float(to_pred[gt].mean())
        fp, fn = int((to_gt[pred] > threshold_nm).sum()), int((to_pred[gt] > threshold_nm).sum())
    else:
        adf = float("inf") if n_p and not n_g else 0.0
        adgt = float("inf") if n_g and not n_p else 0.0
        fp, fn = n_p, n_g
    tp = int((pred & gt).sum())
    precision = tp / n_p if n_p else float(n_g == 0)
    recall = tp / n_g if n_g else float(n_p == 0)
    hit_pred = np.unique(pred_cc[gt & pred]).size if n_pred else 0  # predicted components touching a cleft
    found_gt = np.unique(gt_cc[gt & pred]).size if n_gt else 0
    det_p = hit_pred / n_pred if n_pred else float(n_gt == 0)
    det_r = found_gt / n_gt if n_gt else float(n_pred == 0)
    return {
        "adf": adf,
        "adgt": adgt,
        "cremi_score": (adf + adgt) / 2,
        "fp": fp,
        "fn": fn,
        "voxel_precision": precision,
        "voxel_recall": recall,
        "voxel_f1": _f1(precision, recall) if n_p or n_g else 1.0,
        "detection_precision": det_p,
        "detection_recall": det_r,
        "detection_f1": _f1(det_p, det_r) if n_pred or n_gt else 1.0,
        "n_pred_clefts": int(n_pred),
        "n_gt_clefts": int(n_gt),
    }


class CremiCleftMetric(Metric):
    """Ignite metric: one cleft score (:func:`cremi_cleft_scores`) averaged over the evaluated volumes.

    ``update((y_pred, y))``: lists (or batches) of channel-first ``(1, Z, Y, X)`` items, ``y_pred``
    the cleft PROBABILITY (thresholded at ``threshold``), ``y`` the 0/1 cleft mask. Error-like
    scores (``cremi_score``, ``adf``, ``adgt``, ``fp``, ``fn``: lower is better) need
    ``key_metric_negative_sign`` / a ``metric_cmp_fn`` that prefers lower values when they pick
    the best checkpoint; :attr:`lower_is_better` says which. The per-volume score dicts of the last
    epoch stay in ``self.items`` (this process's volumes); ``compute()`` averages over every process.

    Args:
        score: a key of :data:`CLEFT_SCORES`.
        voxel_size_nm: the voxel size in nm, ``(Z, Y, X)``.
        threshold: the probability above which a voxel is cleft.
        threshold_nm / min_size: as :func:`cremi_cleft_scores`.

    Example:
        >>> m = CremiCleftMetric("cremi_score", voxel_size_nm=(50.0, 4.6, 4.6))
        >>> gt = np.zeros((1, 2, 8, 8)); gt[0, 1, 2:4, 2:4] = 1
        >>> m.update(([gt * 0.9], [gt]))
        >>> m.compute(), m.lower_is_better
        (0.0, True)
    """

    def __init__(
        self,
        score: str = "cremi_score",
        voxel_size_nm: Sequence[float] = (40.0, 4.0, 4.0),
        threshold: float = 0.5,
        threshold_nm: float = 200.0,
        min_size: int = 0,
        output_transform: Callable = lambda x: x,
        device: str | torch.device = "cpu",
    ) -> None:
        if score not in CLEFT_SCORES:
            raise ValueError(f"score must be one of {list(CLEFT_SCORES)}, got {score!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        self.score, self.voxel_size_nm = score, tuple(float(v) for v in voxel_size_nm)
        self.threshold, self.threshold_nm, self.min_size = float(threshold), float(threshold_nm), int(min_size)
        self.lower_is_better = CLEFT_SCORES[score]
        self.items: list[dict[str, float]] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self.items = []

    def update(self, output: Sequence[Any]) -> None:
        for p, t in channel_first_pairs(output, ndim=4):
            pred, gt = p > self.threshold, t > 0.5
            key = (self.voxel_size_nm, self.threshold_nm, self.min_size)
            self.items.append(_SCORE_CACHE.get((pred, gt), key, lambda pred=pred, gt=gt, key=key: cremi_cleft_scores(pred, gt, *key)))

    def compute(self) -> float:
        """The mean over the volumes of every process (``DistributedSampler`` validation: summed across ranks)."""
        values = [s[self.score] for s in self.items]
        total = torch.tensor([float(np.sum(values)) if values else 0.0, float(len(values))], dtype=torch.float64)
        if idist.get_world_size() > 1:
            total = idist.all_reduce(total.to(idist.device())).cpu()
        if total[1] == 0:
            raise NotComputableError("CremiCleftMetric needs at least one volume")
        return float(total[0] / total[1])
