"""Instance segmentation scores: one-to-one matching, merges/splits, adapted Rand error, VI.

Definitions (0 is background in both label images and is never an object):

* IoU matrix between every ground-truth and predicted object, from one contingency table.
* **Matching** at an IoU threshold ``t``: a one-to-one assignment maximising the summed IoU
  (Hungarian, ``scipy.optimize.linear_sum_assignment``) among pairs with IoU >= ``t``. For
  ``t`` >= 0.5 every object can overlap at most one partner that much, so this equals the
  usual greedy matching. TP = matched pairs, FP = unmatched predictions, FN = unmatched truth;
  precision TP/(TP+FP), recall TP/(TP+FN), F1 = 2TP/(2TP+FP+FN) (1.0 when both are empty).
* **Merges**: predicted objects that each contain at least ``significant`` (default 0.5) of
  the voxels of two or more ground-truth objects (counted per predicted object); **splits**:
  ground-truth objects that contain at least ``significant`` of the voxels of two or more
  predicted objects (counted per ground-truth object).
* **ARAND** (adapted Rand error, foreground of the truth only, as in CREMI / PlantSeg) and
  **VOI** (variation of information: split + merge entropies) from ``skimage.metrics``.

Example:
    >>> gt = np.array([[1, 1, 0, 2, 2], [1, 1, 0, 2, 2]])
    >>> pred = np.array([[3, 3, 0, 4, 0], [3, 3, 0, 4, 0]])
    >>> s = instance_scores(gt, pred, thresholds=(0.5, 0.75))
    >>> s["f1"], s["n_true"], s["n_pred"]
    ([1.0, 0.5], 2, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from scipy.optimize import linear_sum_assignment
from skimage.metrics import adapted_rand_error, variation_of_information

from cseg_monai.metrics._tensors import channel_first_pairs

__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "InstanceScoresMetric",
    "detection_scores",
    "instance_scores",
    "iou_matrix",
    "match_at",
    "pooled_curve",
]

DEFAULT_IOU_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))


def _check_pair(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(truth), np.asarray(pred)
    if t.shape != p.shape:
        raise ValueError(f"ground truth shape {t.shape} differs from the prediction {p.shape}")
    for name, a in (("ground truth", t), ("prediction", p)):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must hold integer instance ids, got {a.dtype}")
        if a.size and a.min() < 0:
            raise ValueError(f"{name} has negative ids")
    return t, p


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(iou (n_true, n_pred), overlap voxels, true sizes, pred sizes)`` over objects (ids > 0).

    Example:
        >>> iou, *_ = iou_matrix(np.array([1, 1, 2, 0]), np.array([1, 2, 2, 2]))
        >>> iou.round(3).tolist()
        [[0.5, 0.25], [0.0, 0.333]]
    """
    t, p = _check_pair(truth, pred)
    _, t_ids = np.unique(t.ravel(), return_inverse=True)
    _, p_ids = np.unique(p.ravel(), return_inverse=True)
    t_has_bg = bool((t == 0).any())
    p_has_bg = bool((p == 0).any())
    n_t, n_p = int(t_ids.max()) + 1 if t.size else 0, int(p_ids.max()) + 1 if p.size else 0
    table = np.bincount(t_ids * n_p + p_ids, minlength=n_t * n_p).reshape(n_t, n_p) if n_t and n_p else np.zeros((n_t, n_p), np.int64)
    t_sizes, p_sizes = table.sum(1), table.sum(0)
    table = table[int(t_has_bg) :, int(p_has_bg) :]
    t_sizes, p_sizes = t_sizes[int(t_has_bg) :], p_sizes[int(p_has_bg) :]
    union = t_sizes[:, None] + p_sizes[None, :] - table
    iou = np.where(union > 0, table / np.maximum(union, 1), 0.0)
    return iou, table, t_sizes, p_sizes


def match_at(iou: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` of the one-to-one matching at IoU >= ``threshold`` (Hungarian on IoU).

    Example:
        >>> match_at(np.array([[0.9, 0.6], [0.55, 0.0]]), 0.5)
        (2, 0, 0)
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"IoU threshold must lie in (0, 1], got {threshold}")
    n_t, n_p = iou.shape
    if n_t == 0 or n_p == 0:
        return 0, n_p, n_t
    ok = iou >= threshold
    if not ok.any():
        return 0, n_p, n_t
    rows, cols = np.nonzero(ok.any(1))[0], np.nonzero(ok.any(0))[0]
    sub = np.where(ok[np.ix_(rows, cols)], iou[np.ix_(rows, cols)], 0.0)
    r, c = linear_sum_assignment(sub, maximize=True)
    tp = int((sub[r, c] >= threshold).sum())
    return tp, n_p - tp, n_t - tp


def instance_scores(
    truth: np.ndarray,
    pred: np.ndarray,
    thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    significant: float = 0.5,
) -> dict[str, Any]:
    """Matching scores per IoU threshold, merges, splits, ARAND and VOI of one label image pair.

    Returns:
        ``{"thresholds", "precision", "recall", "f1", "tp", "fp", "fn"}`` (lists, one value per
        threshold), ``"n_true"``, ``"n_pred"``, ``"merges"``, ``"splits"``, ``"arand"``,
        ``"voi_split"``, ``"voi_merge"``, ``"voi"``.
    """
    t, p = _check_pair(truth, pred)
    ths = [float(x) for x in thresholds]
    if any(not 0.0 < x <= 1.0 for x in ths):
        raise ValueError(f"IoU thresholds must lie in (0, 1], got {ths}")
    iou, overlap, t_sizes, p_sizes = iou_matrix(t, p)
    out: dict[str, Any] = {"thresholds": ths, "precision": [], "recall": [], "f1": [], "tp": [], "fp": [], "fn": []}
    for th in ths:
        tp, fp, fn = match_at(iou, th)
        out["tp"].append(tp)
        out["fp"].append(fp)
        out["fn"].append(fn)
        precision, recall, f1 = detection_scores(tp, fp, fn)
        out["precision"].append(precision)
        out["recall"].append(recall)
        out["f1"].append(f1)
    n_t, n_p = iou.shape
    out["n_true"], out["n_pred"] = int(n_t), int(n_p)
    if n_t and n_p:
        covers_true = overlap >= significant * t_sizes[:, None]  # pred covers most of a true object
        covers_pred = overlap >= significant * p_sizes[None, :]  # true object holds most of a pred
        out["merges"] = int((covers_true.sum(0) >= 2).sum())
        out["splits"] = int((covers_pred.sum(1) >= 2).sum())
    else:
        out["merges"] = out["splits"] = 0
    if (t > 0).any():
        are, _, _ = adapted_rand_error(t.astype(np.int64), p.astype(np.int64), ignore_labels=(0,))
        out["arand"] = float(are)
    else:
        out["arand"] = float("nan")
    if (t > 0).any() or (p > 0).any():
        split, merge = variation_of_information(t.astype(np.int64), p.astype(np.int64), ignore_labels=(0,))
    else:  # two empty label images: nothing to split or merge
        split = merge = 0.0
    out["voi_split"], out["voi_merge"] = float(split), float(merge)
    out["voi"] = float(split + merge)
    return out


def detection_scores(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """``(precision, recall, F1)`` of matched counts; each is 1.0 where it has nothing to count.

    Example:
        >>> detection_scores(2, 0, 2)
        (1.0, 0.5, 0.6666666666666666)
    """
    return (
        tp / (tp + fp) if tp + fp else 1.0,
        tp / (tp + fn) if tp + fn else 1.0,
        2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
    )


def pooled_curve(items: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """F1 / precision / recall per IoU threshold with TP, FP, FN summed over items (:func:`instance_scores` outputs).

    Pooling counts volumes by their objects, not one vote each.

    Example:
        >>> pooled_curve([{"thresholds": [0.5], "tp": [2], "fp": [0], "fn": [2]}])["f1"]
        [0.6666666666666666]
    """
    if not items:
        raise ValueError("no items to pool")
    ths = list(items[0]["thresholds"])
    if any(list(s["thresholds"]) != ths for s in items):
        raise ValueError("items to pool must share their IoU thresholds")
    out: dict[str, list[float]] = {"thresholds": ths, "f1": [], "precision": [], "recall": []}
    for k in range(len(ths)):
        precision, recall, f1 = detection_scores(*(sum(s[c][k] for s in items) for c in ("tp", "fp", "fn")))
        out["f1"].append(f1)
        out["precision"].append(precision)
        out["recall"].append(recall)
    return out


class InstanceScoresMetric(Metric):
    """Ignite metric over instance label images: pooled matching F1 at one IoU, or mean ARAND / VOI.

    ``update((pred_instances, true_instances))`` takes lists (or batches) of channel-first
    ``(1, [Z,] Y, X)`` integer id images, as ``from_engine(["instances", "label"])`` gives
    after decollation. ``compute()`` returns one float:

    * ``score="f1"``: ``2 TP / (2 TP + FP + FN)`` with TP/FP/FN summed over all items at
      ``iou`` (pooled, so volumes count by their objects);
    * ``score="mean_f1"``: that pooled F1 averaged over the thresholds from 0.5 up (0.5 ... 0.9
      by default), which rewards accurate outlines and, on small validation sets, chooses
      checkpoints far more stably than F1 at one threshold;
    * ``score="arand"`` / ``"voi"``: the mean over items.

    The per-item :func:`instance_scores` of the last epoch are kept in ``self.items`` (for the
    F1-vs-IoU picture of :func:`cseg_monai.visualisation.f1_iou_plot`).

    Example:
        >>> m = InstanceScoresMetric(score="f1", iou=0.5)
        >>> gt = np.array([[[1, 1, 0, 2, 2]]])
        >>> m.update(([gt], [gt]))
        >>> m.compute()
        1.0
    """

    def __init__(
        self,
        score: str = "f1",
        iou: float = 0.5,
        thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
        output_transform: Callable = lambda x: x,
        device: str | torch.device = "cpu",
    ) -> None:
        if score not in ("f1", "mean_f1", "arand", "voi"):
            raise ValueError(f"score must be 'f1', 'mean_f1', 'arand' or 'voi', got {score!r}")
        ths = tuple(float(t) for t in thresholds)
        if score == "f1" and float(iou) not in ths:
            ths = tuple(sorted(ths + (float(iou),)))
        self.score, self.iou, self.thresholds = score, float(iou), ths
        self.items: list[dict[str, Any]] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self.items = []

    def update(self, output: Sequence[Any]) -> None:
        for p, t in channel_first_pairs(output):
            self.items.append(instance_scores(t.astype(np.int64), p.astype(np.int64), self.thresholds))

    def compute(self) -> float:
        if not self.items:
            raise NotComputableError("InstanceScoresMetric needs at least one item")
        if self.score in ("f1", "mean_f1"):
            ks = [self.thresholds.index(self.iou)] if self.score == "f1" else [
                k for k, t in enumerate(self.thresholds) if t >= 0.5
            ]  # fmt: skip
            if not ks:
                raise NotComputableError("mean_f1 needs IoU thresholds >= 0.5")
            f1 = pooled_curve(self.items)["f1"]
            return float(np.mean([f1[k] for k in ks]))
        values = [s[self.score] for s in self.items if np.isfinite(s[self.score])]
        return float(np.mean(values)) if values else float("nan")
