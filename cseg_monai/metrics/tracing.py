"""Scores of objects traced through serial sections: links, splits and merges, runs, ARAND and VOI.

A traced volume is right where it links the profiles of consecutive sections that belong to one
object. :func:`tracing_scores` compares a traced ``(Z, Y, X)`` id volume with the truth:

- **links**: a link is a pair of profiles in consecutive sections that overlap and carry the same
  id (a profile is a connected piece of one id in one section, so a branching object has
  several profiles in a section and more than one link between two sections). Predicted
  profiles are matched one to one with true profiles of their section (IoU > 0.5); a predicted
  link is right when both its profiles match true profiles that form a true link. Precision,
  recall and F1 of links.
- **splits and merges**: a true object covered by ``k`` predicted ids (each over at least
  ``min_fraction`` of the smaller of the two) counts ``k - 1`` splits; a predicted id covering
  ``k`` true objects counts ``k - 1`` merges.
- **runs**: along each true object, section by section, the predicted id that covers most of
  its profile; a correct run is a stretch of the object's consecutive sections (sections where
  it is absent, a damaged one, do not break it) with the same predicted id, which covers this
  object mostly (not a merge). ``expected_run_length`` = sum of squared run lengths / number
  of true profiles (object, section): the expected length of correct tracing from a profile
  drawn at random, a wrongly traced one counting 0 (the section-wise counterpart of the
  expected run length of connectomics); ``mean_run_length`` the plain mean of the runs.
- **ARAND and VOI** of the whole volume (:func:`~cseg_monai.metrics.instances.instance_scores`).

Example:
    >>> truth = np.zeros((4, 6, 6), np.int64); truth[:, 1:4, 1:4] = 1
    >>> pred = truth.copy(); pred[2:] *= 2  # split in the middle
    >>> s = tracing_scores(truth, pred)
    >>> s["link_recall"], s["splits"], s["expected_run_length"]
    (0.6666666666666666, 1, 2.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from cseg_monai.common.caching import ArrayCache
from cseg_monai.metrics._tensors import channel_first_pairs
from cseg_monai.metrics.instances import instance_scores

__all__ = ["TRACING_SCORES", "TracingScoresMetric", "section_profiles_of", "tracing_scores"]

#: the scores :class:`TracingScoresMetric` reports, and which are errors (lower is better).
TRACING_SCORES: dict[str, bool] = {
    "link_f1": False, "link_precision": False, "link_recall": False, "expected_run_length": False,
    "splits": True, "merges": True, "arand": True, "voi": True,
}  # fmt: skip
#: a bundle's tracing metrics score the same volumes: the first computes, the others hit this
_SCORE_CACHE = ArrayCache(size=8)


def section_profiles_of(ids: np.ndarray) -> np.ndarray:
    """Per-section profiles of a 3D id volume: connected pieces (8-connected) of each id in each section, numbered per section.

    Example:
        >>> v = np.array([[[1, 0, 1], [0, 0, 0]]])
        >>> section_profiles_of(v)[0].tolist()
        [[1, 0, 2], [0, 0, 0]]
    """
    vol = np.asarray(ids)
    out = np.zeros(vol.shape, np.int64)
    for z in range(vol.shape[0]):
        sec = vol[z]
        n = 0
        for obj, where in enumerate(ndimage.find_objects(sec.astype(np.int64)), start=1):
            if where is None:
                continue
            lab, k = ndimage.label(sec[where] == obj, np.ones((3, 3), bool))
            part = out[z][where]
            part[lab > 0] = lab[lab > 0] + n
            n += k
    return out


def _profile_owner(profiles: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The id that each profile (1..N of one section) carries (the majority id)."""
    n = int(profiles.max()) + 1
    owner = np.zeros(n, np.int64)
    fg = profiles > 0
    if fg.any():
        pairs, counts = np.unique(np.stack([profiles[fg], ids[fg]]), axis=1, return_counts=True)
        order = np.lexsort((-counts, pairs[0]))
        first = np.unique(pairs[0][order], return_index=True)[1]
        owner[pairs[0][order][first]] = pairs[1][order][first]
    return owner


def _links(profiles: np.ndarray, ids: np.ndarray, min_area: int = 0) -> set[tuple[int, int, int]]:
    """``(z, profile in z, profile in z + 1)`` of overlapping profiles carrying the same id, both of ``min_area`` pixels or more."""
    links = set()
    owners = [_profile_owner(profiles[z], ids[z]) for z in range(profiles.shape[0])]
    if min_area > 1:
        for z in range(profiles.shape[0]):
            small = np.bincount(profiles[z].reshape(-1)) < min_area
            owners[z][small[: len(owners[z])]] = 0
    for z in range(profiles.shape[0] - 1):
        a, b = profiles[z], profiles[z + 1]
        both = (a > 0) & (b > 0)
        if not both.any():
            continue
        for pa, pb in np.unique(np.stack([a[both], b[both]]), axis=1).T:
            if owners[z][pa] and owners[z][pa] == owners[z + 1][pb]:
                links.add((z, int(pa), int(pb)))
    return links


def _match_profiles(pred: np.ndarray, truth: np.ndarray) -> dict[int, int]:
    """Predicted profile -> true profile of one section, IoU > 0.5 (so one to one)."""
    fg = (pred > 0) & (truth > 0)
    if not fg.any():
        return {}
    pairs, overlap = np.unique(np.stack([pred[fg], truth[fg]]), axis=1, return_counts=True)
    area_p = np.bincount(pred.reshape(-1))
    area_t = np.bincount(truth.reshape(-1))
    iou = overlap / (area_p[pairs[0]] + area_t[pairs[1]] - overlap)
    good = iou > 0.5
    return {int(p): int(t) for p, t in zip(pairs[0][good], pairs[1][good])}


def _splits_merges(truth: np.ndarray, pred: np.ndarray, min_fraction: float) -> tuple[int, int]:
    fg = (truth > 0) & (pred > 0)
    if not fg.any():
        return 0, 0
    pairs, overlap = np.unique(np.stack([truth[fg], pred[fg]]), axis=1, return_counts=True)
    size_t = np.bincount(truth.reshape(-1))
    size_p = np.bincount(pred.reshape(-1))
    real = overlap >= min_fraction * np.minimum(size_t[pairs[0]], size_p[pairs[1]])
    t_ids, per_t = np.unique(pairs[0][real], return_counts=True)
    p_ids, per_p = np.unique(pairs[1][real], return_counts=True)
    return int((per_t - 1).sum()), int((per_p - 1).sum())


def _runs(truth: np.ndarray, pred: np.ndarray) -> tuple[list[int], int]:
    """Lengths (sections) of the correctly traced runs along every true object, and how many
    (object, section) profiles the truth has in all (those traced wrongly are runs of length 0)."""
    fg = (truth > 0) & (pred > 0)
    size_p = np.bincount(pred.reshape(-1)) if pred.size else np.zeros(1, np.int64)
    # the true object each predicted id mostly covers
    owner = np.zeros(len(size_p), np.int64)
    if fg.any():
        pairs, counts = np.unique(np.stack([pred[fg], truth[fg]]), axis=1, return_counts=True)
        order = np.lexsort((-counts, pairs[0]))
        first = np.unique(pairs[0][order], return_index=True)[1]
        owner[pairs[0][order][first]] = pairs[1][order][first]
    runs: list[int] = []
    per_section: dict[int, dict[int, int]] = {}  # true id -> {section: predicted id}
    for z in range(truth.shape[0]):
        t, p = truth[z], pred[z]
        present = t > 0
        if not present.any():
            continue
        pairs, counts = np.unique(np.stack([t[present], p[present]]), axis=1, return_counts=True)
        order = np.lexsort((-counts, pairs[0]))
        first = np.unique(pairs[0][order], return_index=True)[1]
        for tid, pid in zip(pairs[0][order][first], pairs[1][order][first]):
            per_section.setdefault(int(tid), {})[z] = int(pid)
    total = sum(len(sections) for sections in per_section.values())
    for tid, sections in per_section.items():
        run, last_z, last_p = 0, None, None
        for z in sorted(sections):
            pid = sections[z]
            good = pid > 0 and owner[pid] == tid
            if good and last_z is not None and pid == last_p:
                run += 1
            else:
                if run:
                    runs.append(run)
                run = 1 if good else 0
            last_z, last_p = z, (pid if good else None)
        if run:
            runs.append(run)
    return runs, total


def tracing_scores(truth: np.ndarray, pred: np.ndarray, min_fraction: float = 0.1, min_profile_area: int = 0) -> dict[str, Any]:
    """Scores of a traced id volume against the truth (see the module docstring).

    Args:
        truth: ``(Z, Y, X)`` true ids, 0 = background.
        pred: ``(Z, Y, X)`` traced ids, 0 = background.
        min_fraction: the overlap (of the smaller object) from which an id counts as covering another, for splits and merges.
        min_profile_area: profiles (true or predicted) of fewer pixels take part in no link:
            crumbs of a label image (a few pixels of an object cut off from its profile) are not
            what a tracer traces; 0 counts every profile.

    Returns:
        ``link_precision``, ``link_recall``, ``link_f1``, ``n_true_links``, ``n_pred_links``,
        ``splits``, ``merges``, ``expected_run_length`` (sections), ``mean_run_length``,
        ``arand``, ``voi``, ``voi_split``, ``voi_merge``, ``n_true``, ``n_pred``.

    Raises:
        ValueError: shapes that differ, not 3D, non-integer or negative ids.
    """
    t, p = np.asarray(truth), np.asarray(pred)
    if t.shape != p.shape or t.ndim != 3:
        raise ValueError(f"truth {t.shape} and pred {p.shape} must be (Z, Y, X) volumes of one shape")
    for name, arr in (("truth", t), ("pred", p)):
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
            raise ValueError(f"{name} must hold non-negative integer ids, got {arr.dtype}")
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must lie in (0, 1], got {min_fraction}")
    t = relabel_sequential(t.astype(np.int64))[0]  # ids as large as 1e9 (body ids) must not size the bincounts
    p = relabel_sequential(p.astype(np.int64))[0]
    prof_t, prof_p = section_profiles_of(t), section_profiles_of(p)
    if min_profile_area < 0:
        raise ValueError(f"min_profile_area must be >= 0 pixels, got {min_profile_area}")
    true_links, pred_links = _links(prof_t, t, min_profile_area), _links(prof_p, p, min_profile_area)
    matches = [_match_profiles(prof_p[z], prof_t[z]) for z in range(t.shape[0])]
    right = sum(
        1 for z, a, b in pred_links if a in matches[z] and b in matches[z + 1] and (z, matches[z][a], matches[z + 1][b]) in true_links
    )
    precision = right / len(pred_links) if pred_links else (1.0 if not true_links else 0.0)
    recall = right / len(true_links) if true_links else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    splits, merges = _splits_merges(t, p, min_fraction)
    runs, total = _runs(t, p)
    scores = instance_scores(t, p, thresholds=(0.5,))
    return {
        "link_precision": precision, "link_recall": recall, "link_f1": f1,
        "n_true_links": len(true_links), "n_pred_links": len(pred_links),
        "splits": splits, "merges": merges,
        "expected_run_length": float(np.sum(np.square(runs)) / total) if total else 0.0,
        "mean_run_length": float(np.mean(runs)) if runs else 0.0,
        "arand": scores["arand"], "voi": scores["voi"], "voi_split": scores["voi_split"], "voi_merge": scores["voi_merge"],
        "n_true": int(len(np.unique(t[t > 0]))), "n_pred": int(len(np.unique(p[p > 0]))),
    }  # fmt: skip


class TracingScoresMetric(Metric):
    """Ignite metric of traced id volumes: one of :data:`TRACING_SCORES`, the mean over items.

    ``update((traced, truth))`` takes lists (or batches) of channel-first ``(1, Z, Y, X)`` id
    volumes, as ``from_engine(["traced", "ids"])`` gives after decollation. The bundle's several
    tracing metrics share one :func:`tracing_scores` per volume (a cache).

    Example:
        >>> truth = np.zeros((1, 3, 6, 6), np.int64); truth[0, :, 1:4, 1:4] = 1
        >>> m = TracingScoresMetric("link_f1")
        >>> m.update(([truth], [truth]))
        >>> m.compute()
        1.0
    """

    def __init__(self, score: str = "link_f1", min_profile_area: int = 0, output_transform: Callable = lambda x: x,
                 device: str | torch.device = "cpu") -> None:  # fmt: skip
        if score not in TRACING_SCORES:
            raise ValueError(f"score must be one of {sorted(TRACING_SCORES)}, got {score!r}")
        self.score, self.min_profile_area = score, int(min_profile_area)
        self.items: list[dict[str, Any]] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self.items = []

    def update(self, output: Sequence[Any]) -> None:
        for pred, truth in channel_first_pairs(output):
            p, t = np.asarray(pred).astype(np.int64), np.asarray(truth).astype(np.int64)
            self.items.append(_SCORE_CACHE.get([p, t], self.min_profile_area, lambda p=p, t=t: tracing_scores(t, p, min_profile_area=self.min_profile_area)))

    def compute(self) -> float:
        if not self.items:
            raise NotComputableError("TracingScoresMetric needs at least one item")
        return float(np.mean([item[self.score] for item in self.items]))
