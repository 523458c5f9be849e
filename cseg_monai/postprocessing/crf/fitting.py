"""Fit the dense-CRF parameters on labelled validation data by random search.

Each trial draws kernel weights and widths (log-uniform for the widths) and a compatibility
(Potts, or the organelle preset with a drawn cost for impossible neighbours), runs the CRF on
every validation item and scores the refined labels pooled over the labelled voxels. The
first trial is always the starting parameters, and "no CRF" is scored too, so the winner is
never worse than doing nothing on the validation data (held-out data may still disagree).

Example:
    >>> rng = np.random.default_rng(0)
    >>> truth = np.zeros((32, 32), np.int64); truth[:, 16:] = 1
    >>> image = np.where(truth == 1, 0.8, 0.2)[None].astype(np.float32)
    >>> logits = 1.5 * np.eye(2)[truth].transpose(2, 0, 1) + rng.normal(0, 1.0, (2, 32, 32))
    >>> prob = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    >>> best, trials = random_search([(image, prob, truth)], n_classes=2, n_trials=4, seed=0)
    >>> trials[0]["name"], best["macro_f1"] >= trials[0]["macro_f1"]
    ('no_crf', True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cseg_monai.common.constants import IGNORE_INDEX, ORGANELLE_CLASSES
from cseg_monai.metrics.classification import classification_scores
from cseg_monai.postprocessing.crf.dense_crf import DenseCRF
from cseg_monai.postprocessing.crf.params import CRFParams, organelle_compatibility

__all__ = ["SEARCH_SPACE", "random_search", "sample_params", "score_params"]

#: name -> (kind, low, high) or ("choice", options); widths are in the units of ``spacing``,
#: ``intensity_sigma`` in scaled image units ([0, 1]). Weights are log-uniform: on good
#: per-voxel probabilities the useful weights are small, and a uniform draw rarely tries them.
SEARCH_SPACE: dict[str, tuple] = {
    "iterations": ("choice", (3, 5, 8)),
    "smoothness_weight": ("log", 0.05, 6.0),
    "smoothness_sigma": ("log", 0.5, 4.0),
    "appearance_weight": ("log", 0.05, 10.0),
    "appearance_sigma": ("log", 2.0, 40.0),
    "intensity_sigma": ("log", 0.01, 0.3),
    "impossible_cost": ("choice", (None, 1.5, 3.0, 6.0)),  # None = Potts
}


def sample_params(rng: np.random.Generator, n_classes: int, space: dict[str, tuple] | None = None) -> tuple[CRFParams, dict]:
    """One random draw from ``space``: ``(params, drawn values)``.

    Args:
        rng: the random generator (one draw advances it).
        n_classes: number of classes; a drawn ``impossible_cost`` gives the organelle
            compatibility only for the 6 organelle classes, else Potts.
        space: the search space (default :data:`SEARCH_SPACE`).

    Example:
        >>> params, drawn = sample_params(np.random.default_rng(0), n_classes=2)
        >>> params.iterations in (3, 5, 8), params.compatibility, drawn["impossible_cost"]
        (True, 'potts', None)
    """
    space = SEARCH_SPACE if space is None else space
    drawn: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "choice":
            options = spec[1]
            drawn[name] = options[int(rng.integers(len(options)))]
        elif kind == "uniform":
            drawn[name] = float(rng.uniform(spec[1], spec[2]))
        elif kind == "log":
            drawn[name] = float(math.exp(rng.uniform(math.log(spec[1]), math.log(spec[2]))))
        else:
            raise ValueError(f"unknown search-space kind {kind!r} for {name!r}")
    cost = drawn.pop("impossible_cost", None)
    compat: Any = "potts" if cost is None or n_classes != len(ORGANELLE_CLASSES) else organelle_compatibility(cost).tolist()
    drawn["impossible_cost"] = cost if compat != "potts" else None
    fields = {k: v for k, v in drawn.items() if k != "impossible_cost"}
    return CRFParams(**fields, compatibility=compat), drawn


def score_params(
    crf: DenseCRF | None,
    items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    n_classes: int,
    spacing: Sequence[float] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, float]:
    """Pooled accuracy / macro F1 / kappa of ``crf`` (None = the input argmax) on ``(image, prob, label)`` items.

    Args:
        crf: the model to score, or None for the argmax of the probabilities (no CRF).
        items: ``(image (C, *spatial), prob (n_classes, *spatial), label (*spatial))`` triples.
        n_classes: number of classes.
        spacing: physical voxel size (units of the sigmas).
        ignore_index: label value of unlabelled voxels, left out of the scores.

    Example:
        >>> prob = np.array([[[0.9, 0.2, 0.6]], [[0.1, 0.8, 0.4]]], np.float32)  # argmax 0, 1, 0
        >>> label = np.array([[0, 1, 1]])
        >>> score_params(None, [(np.zeros((1, 1, 3)), prob, label)], n_classes=2)["accuracy"]
        0.6666666666666666
    """
    preds, targets = [], []
    for image, prob, label in items:
        labels = prob.argmax(0) if crf is None else crf.labels(prob, image, spacing)
        keep = label != ignore_index
        preds.append(labels[keep].astype(np.int64))
        targets.append(label[keep].astype(np.int64))
    pred = np.concatenate(preds)
    onehot = np.eye(n_classes, dtype=np.float32)[pred]  # scores of hard labels: AP is not meaningful here
    scores = classification_scores(onehot, np.concatenate(targets), n_classes, ignore_index=ignore_index)
    return {"accuracy": float(scores["accuracy"]), "macro_f1": float(scores["macro_f1"]), "kappa": float(scores["kappa"])}


def random_search(
    items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    n_classes: int,
    n_trials: int = 40,
    seed: int = 0,
    start: CRFParams | None = None,
    spacing: Sequence[float] | None = None,
    backend: str = "native",
    objective: str = "macro_f1",
    space: dict[str, tuple] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Random search of CRF parameters maximising ``objective`` on ``items``.

    Args:
        items: ``(image (C, *spatial), prob (n_classes, *spatial), label (*spatial))`` triples.
        n_classes: number of classes.
        n_trials: random draws (after "no CRF" and ``start``).
        seed: random seed of the draws.
        start: the first CRF trial (default :class:`CRFParams()`).
        spacing: physical voxel size (units of the sigmas).
        backend: CRF backend.
        objective: ``macro_f1``, ``kappa`` or ``accuracy``.
        space: the search space (default :data:`SEARCH_SPACE`).
        log: called with one line per trial (e.g. ``print``).

    Returns:
        ``(best trial, all trials)``; a trial is ``{"name", "params" (dict or None), "drawn",
        "accuracy", "macro_f1", "kappa", "seconds"}``.


    Raises:
        ValueError: an unknown objective, no items, or a bad ``n_trials``.

    Example:
        >>> truth = np.zeros((16, 16), np.int64); truth[:, 8:] = 1
        >>> image = np.where(truth == 1, 0.8, 0.2)[None].astype(np.float32)
        >>> prob = np.where(np.eye(2, dtype=bool)[truth].transpose(2, 0, 1), 0.6, 0.4).astype(np.float32)
        >>> best, trials = random_search([(image, prob, truth)], n_classes=2, n_trials=1, objective="accuracy")
        >>> [t["name"] for t in trials], best["accuracy"]
        (['no_crf', 'start', 'trial_000'], 1.0)
    """
    if objective not in ("macro_f1", "kappa", "accuracy"):
        raise ValueError(f"objective must be macro_f1, kappa or accuracy, got {objective!r}")
    if not items:
        raise ValueError("no validation items to fit on")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 0:
        raise ValueError(f"n_trials must be an integer >= 0, got {n_trials!r}")
    rng = np.random.default_rng(seed)
    candidates: list[tuple[str, CRFParams | None, dict]] = [("no_crf", None, {}), ("start", start or CRFParams(), {})]
    for i in range(n_trials):
        params, drawn = sample_params(rng, n_classes, space)
        candidates.append((f"trial_{i:03d}", params, drawn))
    trials = []
    for name, params, drawn in candidates:
        began = time.perf_counter()
        crf = None if params is None else DenseCRF(params, backend=backend)
        scores = score_params(crf, items, n_classes, spacing)
        trial = {
            "name": name,
            "params": None if params is None else params.to_dict(),
            "drawn": drawn,
            **scores,
            "seconds": time.perf_counter() - began,
        }
        trials.append(trial)
        if log is not None:
            best_so_far = max(t[objective] for t in trials)
            log(f"{name}: {objective} {trial[objective]:.4f} (best {best_so_far:.4f}) {drawn}")
    best = max(trials, key=lambda t: t[objective])
    return best, trials
