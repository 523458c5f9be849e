"""Voxel-wise classification scores pooled over all labelled voxels, and Ignite wrappers.

Organelle classification assigns every voxel one of ``n_classes`` classes. Labels are
sparse: voxels whose target equals ``ignore_index`` (default 255, see
:data:`cseg_monai.common.constants.IGNORE_INDEX`; any int is accepted) are removed before
scoring, so they never change a score. All remaining voxels of all images are POOLED
(one big set of voxels), then scored with scikit-learn:

* ``accuracy``: fraction of voxels whose argmax class is the target;
* ``per_class_f1``: F1 of every class ``0..n_classes-1`` (``zero_division=0``: a class
  that is neither labelled nor predicted gets 0 here);
* ``macro_f1``: mean F1 over the classes that occur in the targets or in the
  predictions (scikit-learn's default label set), so a class that is neither labelled
  nor predicted does not pull the mean down; a class that is predicted but never
  labelled counts with F1 = 0;
* ``per_class_ap``: one-vs-rest average precision of every class from its probability
  (``average_precision_score``); ``NaN`` for a class absent from the targets (AP is
  undefined without positives);
* ``macro_ap``: mean of the defined per-class APs (absent classes excluded);
* ``kappa``: Cohen's kappa of argmax predictions vs targets; ``NaN`` when undefined
  (chance agreement 1, e.g. a single class in targets and predictions).

Predictions are the argmax over the class channel (ties: the lowest class id).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, average_precision_score, cohen_kappa_score, f1_score

from cseg_monai.common.caching import ArrayCache
from cseg_monai.common.constants import IGNORE_INDEX
from cseg_monai.metrics._tensors import to_numpy as _to_numpy

__all__ = [
    "classification_scores",
    "PooledClassificationMetric",
    "AccuracyMetric",
    "MacroF1Metric",
    "MacroAPMetric",
    "KappaMetric",
]

_PROB_TOL = 1e-4  # slack for probabilities slightly outside [0, 1] (float rounding)


# --------------------------------------------------------------------------- validation
def _check_n_classes(n_classes: object) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    return int(n_classes)


def _check_ignore_index(ignore_index: object) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r} ({type(ignore_index).__name__})")
    return int(ignore_index)


def _softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _flatten_valid(
    probs: Any, target: Any, n_classes: int, ignore_index: int, from_logits: bool, *, batched: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate; return ``(probs (N, C) float64, target (N,) int64)`` of the labelled voxels.

    With ``batched=True`` ``probs`` is ``(B, C, *spatial)`` or ``(M, C)`` and ``target``
    ``(B, *spatial)`` / ``(B, 1, *spatial)`` / ``(M,)`` / ``(M, 1)``; with ``batched=False``
    they are one channel-first item ``(C, *spatial)`` and ``(1, *spatial)`` / ``(*spatial)``.
    """
    p = _to_numpy(probs)
    t = _to_numpy(target)
    if not batched:  # one decollated item: add the batch dimension
        p, t = p[None], t[None]
    what = "probs" if not from_logits else "logits"
    if p.ndim < 2 or p.size == 0:
        raise ValueError(
            f"{what} must be shaped (B, C, *spatial) or (M, C) (one channel-first (C, *spatial) item per image), "
            f"got shape {tuple(p.shape if batched else p.shape[1:])}"
        )
    if not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"{what} must be floating-point, got dtype {p.dtype}")
    if p.shape[1] != n_classes:
        raise ValueError(
            f"{what} has {p.shape[1]} class channels (dim 1 of {tuple(p.shape)}) but n_classes={n_classes}; "
            "pass class probabilities, not argmax labels"
        )
    if not (np.issubdtype(t.dtype, np.integer)):
        raise ValueError(f"target must hold integer class ids, got dtype {t.dtype}")
    expected = (p.shape[0], *p.shape[2:])
    if t.ndim == p.ndim and t.shape[1] == 1:
        t = t[:, 0]
    if tuple(t.shape) != expected:
        if batched:
            raise ValueError(
                f"shape mismatch: {what} {tuple(p.shape)} needs target shaped {expected} or "
                f"{(p.shape[0], 1, *p.shape[2:])}, got {tuple(t.shape)}"
            )
        raise ValueError(
            f"shape mismatch: {what} item {tuple(p.shape[1:])} needs a target item shaped "
            f"{(1, *p.shape[2:])}, got {tuple(t.shape[1:])}"
        )
    if not np.isfinite(p).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    p = np.moveaxis(p, 1, -1).reshape(-1, n_classes)
    t = t.reshape(-1).astype(np.int64, copy=False)
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= n_classes))
    if bad.any():
        values = np.unique(t[bad])[:10].tolist()
        raise ValueError(
            f"target holds class ids outside [0, {n_classes - 1}] that are not ignore_index={ignore_index}: {values}"
        )
    p, t = p[valid].astype(np.float64, copy=False), t[valid]
    if from_logits:
        p = _softmax(p, axis=1)
    elif p.size and (p.min() < -_PROB_TOL or p.max() > 1 + _PROB_TOL):
        raise ValueError(
            f"probs must lie in [0, 1] (got values in [{p.min():.4g}, {p.max():.4g}]); "
            "apply a softmax first or pass from_logits=True"
        )
    return p, t


# --------------------------------------------------------------------------- scores
def _scores_from_flat(probs: np.ndarray, target: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Scores of validated, pooled ``probs`` ``(N, C)`` and ``target`` ``(N,)``, ``N >= 1``."""
    pred = probs.argmax(axis=1)
    labels = np.arange(n_classes)
    counts = np.bincount(target, minlength=n_classes)
    per_class_f1 = f1_score(target, pred, labels=labels, average=None, zero_division=0).astype(np.float64)
    seen = np.union1d(np.unique(target), np.unique(pred))  # classes labelled or predicted
    macro_f1 = float(per_class_f1[seen].mean())
    per_class_ap = np.full(n_classes, np.nan)
    for k in np.flatnonzero(counts):
        per_class_ap[k] = average_precision_score(target == k, probs[:, k])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # undefined kappa (0 / 0) on older scikit-learn
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # ... and on newer ones
        kappa = float(cohen_kappa_score(target, pred, labels=labels))
    return {
        "accuracy": float(accuracy_score(target, pred)),
        "macro_f1": macro_f1,
        "per_class_f1": per_class_f1,
        "macro_ap": float(np.nanmean(per_class_ap)),
        "per_class_ap": per_class_ap,
        "kappa": kappa if np.isfinite(kappa) else float("nan"),
        "n_voxels": int(target.size),
        "class_counts": counts.astype(np.int64),
    }


def classification_scores(
    probs: Any,
    target: Any,
    n_classes: int,
    ignore_index: int = IGNORE_INDEX,
    from_logits: bool = False,
) -> dict[str, Any]:
    """Accuracy, F1, average precision and Cohen's kappa pooled over the labelled voxels.

    See the module docstring for the exact definitions and for how classes absent from
    the targets are handled (per-class AP ``NaN`` and excluded from ``macro_ap``; F1 with
    ``zero_division=0``; ``macro_f1`` over classes labelled or predicted).

    Args:
        probs: class probabilities (or logits with ``from_logits=True``), a tensor or array
            shaped ``(B, C, *spatial)`` or ``(M, C)`` with ``C == n_classes``.
        target: integer class ids ``(B, *spatial)``, ``(B, 1, *spatial)``, ``(M,)`` or
            ``(M, 1)``; values in ``[0, n_classes)`` or ``ignore_index``.
        n_classes: number of classes, >= 2.
        ignore_index: target value of unlabelled voxels (removed before scoring); default 255.
        from_logits: apply a softmax over the class channel first.

    Returns:
        dict with ``accuracy``, ``macro_f1``, ``macro_ap``, ``kappa`` (floats),
        ``per_class_f1``, ``per_class_ap`` (float arrays of length ``n_classes``),
        ``n_voxels`` (labelled voxels scored) and ``class_counts`` (labelled voxels per class).

    Raises:
        ValueError: on bad shapes/dtypes/values, or when every voxel is ignored.

    Example:
        >>> import numpy as np
        >>> probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])  # (M, C)
        >>> s = classification_scores(probs, np.array([0, 0, 1, 255]), n_classes=2)
        >>> round(s["accuracy"], 4), round(s["macro_f1"], 4), s["per_class_ap"].tolist()
        (0.6667, 0.6667, [1.0, 1.0])
    """
    n_classes = _check_n_classes(n_classes)
    ignore_index = _check_ignore_index(ignore_index)
    p, t = _flatten_valid(probs, target, n_classes, ignore_index, bool(from_logits))
    if t.size == 0:
        raise ValueError(f"no labelled voxels to score: every target equals ignore_index={ignore_index}")
    return _scores_from_flat(p, t, n_classes)


#: accuracy, F1, AP and kappa metrics of one evaluator score the same pooled epoch once
_SCORE_CACHE = ArrayCache(size=4)


def _cached_scores(probs: np.ndarray, target: np.ndarray, n_classes: int) -> dict[str, Any]:
    """``_scores_from_flat``, computed once per pooled data (:data:`_SCORE_CACHE`)."""
    return _SCORE_CACHE.get((probs, target), n_classes, lambda: _scores_from_flat(probs, target, n_classes))


# --------------------------------------------------------------------------- Ignite metrics
def _identity(x: Any) -> Any:
    return x


class PooledClassificationMetric(Metric):
    """Ignite metric that pools the labelled voxels of an epoch and reports one score.

    ``update((y_pred, y))`` takes class probabilities ``y_pred`` (after the softmax; or
    logits with ``from_logits=True``) and integer labels ``y``, either batched tensors /
    arrays ``(B, C, *spatial)`` and ``(B, 1, *spatial)`` (or ``(B, *spatial)``), or lists
    of channel-first items ``(C, *spatial)`` and ``(1, *spatial)`` (what MONAI's
    ``from_engine(["pred", "label"])`` returns after decollation). Voxels with
    ``y == ignore_index`` are dropped; the others' probabilities (float64) and labels are
    kept on CPU until :meth:`compute`, which returns ``classification_scores(...)[key]``
    of the pooled voxels as one float (so MONAI's ``StatsHandler`` / ``MLFlowHandler`` log
    it). After :meth:`compute`, ``self.scores`` holds the whole score dict.

    Memory: ``N * (C + 1) * 8`` bytes for ``N`` pooled voxels, per metric. With
    ``max_voxels`` set, a uniform random subset of at most ``max_voxels`` of all the
    labelled voxels seen so far is kept (bottom-k sampling: every voxel draws a uniform
    key from a ``numpy`` generator seeded with ``seed`` at every :meth:`reset`, and the
    ``max_voxels`` smallest keys are kept), so an epoch's scores are reproducible for
    the same data order, and metrics with the same settings keep the same subset. The
    scores are then estimates from that subset. ``max_voxels=None`` keeps everything
    (exact scores).

    Metrics with identical pooled data (e.g. :class:`AccuracyMetric`,
    :class:`MacroF1Metric`, :class:`MacroAPMetric`, :class:`KappaMetric` with the same
    settings in one evaluator) share one score computation through a small cache.

    Distributed runs are not reduced across processes: each process scores its own voxels.

    Args:
        n_classes: number of classes ``C``, >= 2.
        key: which score :meth:`compute` returns: ``"accuracy"``, ``"macro_f1"``,
            ``"macro_ap"`` or ``"kappa"``.
        ignore_index: label of unlabelled voxels; default 255.
        from_logits: ``y_pred`` holds logits; a softmax over the class channel is applied.
        max_voxels: keep at most this many voxels (uniform subsample), or ``None``.
        seed: seed of the subsampling generator.
        output_transform: maps the engine output to ``(y_pred, y)``.
        device: passed to :class:`ignite.metrics.Metric` (accumulation is on CPU).
        skip_unrolling: passed to :class:`ignite.metrics.Metric`.

    Example:
        >>> import torch
        >>> m = MacroF1Metric(n_classes=2)
        >>> probs = torch.tensor([[[[0.9, 0.2, 0.5]], [[0.1, 0.8, 0.5]]]])  # (B=1, C=2, H=1, W=3)
        >>> labels = torch.tensor([[[[0, 1, 255]]]])  # (B=1, 1, H=1, W=3): last voxel unlabelled
        >>> m.update((probs, labels))
        >>> m.compute()
        1.0
    """

    _keys = ("accuracy", "macro_f1", "macro_ap", "kappa")

    def __init__(
        self,
        n_classes: int,
        key: str = "macro_f1",
        ignore_index: int = IGNORE_INDEX,
        from_logits: bool = False,
        max_voxels: int | None = None,
        seed: int = 0,
        output_transform: Callable = _identity,
        device: str | torch.device = "cpu",
        skip_unrolling: bool = False,
    ) -> None:
        self.n_classes = _check_n_classes(n_classes)
        if key not in self._keys:
            raise ValueError(f"key must be one of {self._keys}, got {key!r}")
        self.key = key
        self.ignore_index = _check_ignore_index(ignore_index)
        self.from_logits = bool(from_logits)
        if max_voxels is not None and (
            isinstance(max_voxels, bool) or not isinstance(max_voxels, (int, np.integer)) or max_voxels < 1
        ):
            raise ValueError(f"max_voxels must be None or an int >= 1, got {max_voxels!r}")
        self.max_voxels = None if max_voxels is None else int(max_voxels)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.scores: dict[str, Any] | None = None
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    @reinit__is_reduced
    def reset(self) -> None:
        self._probs: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self._keys_rng: list[np.ndarray] = []
        self._n_pooled = 0
        self._num_examples = 0
        self._rng = np.random.default_rng(self.seed)
        self.scores = None

    def _add(self, probs: np.ndarray, target: np.ndarray) -> None:
        self._probs.append(probs)
        self._targets.append(target)
        self._n_pooled += target.size
        if self.max_voxels is None:
            return
        self._keys_rng.append(self._rng.random(target.size))
        if self._n_pooled > self.max_voxels:
            p, t, k = self._pooled(with_keys=True)
            keep = np.sort(np.argpartition(k, self.max_voxels - 1)[: self.max_voxels])  # keep pooling order
            self._probs, self._targets, self._keys_rng = [p[keep]], [t[keep]], [k[keep]]
            self._n_pooled = self.max_voxels

    def _pooled(self, with_keys: bool = False) -> tuple[np.ndarray, ...]:
        p = np.concatenate(self._probs) if self._probs else np.empty((0, self.n_classes))
        t = np.concatenate(self._targets) if self._targets else np.empty(0, np.int64)
        if with_keys:
            return p, t, np.concatenate(self._keys_rng)
        return p, t

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        if not isinstance(output, (list, tuple)) or len(output) != 2:
            raise ValueError(f"{type(self).__name__}.update expects (y_pred, y), got {type(output).__name__}")
        y_pred, y = output
        args = (self.n_classes, self.ignore_index, self.from_logits)
        if isinstance(y_pred, (list, tuple)) or isinstance(y, (list, tuple)):
            if not isinstance(y_pred, (list, tuple)) or not isinstance(y, (list, tuple)) or len(y_pred) != len(y):
                raise ValueError(
                    "y_pred and y must both be lists of the same length (decollated items) or both batches; got "
                    f"{type(y_pred).__name__} of {len(y_pred)} and {type(y).__name__} of {len(y)}"
                )
            for item_pred, item_y in zip(y_pred, y):
                self._add(*_flatten_valid(item_pred, item_y, *args, batched=False))
                self._num_examples += 1
        else:
            self._add(*_flatten_valid(y_pred, y, *args))
            self._num_examples += int(np.shape(y)[0]) if not isinstance(y, torch.Tensor) else int(y.shape[0])

    def compute(self) -> float:
        p, t = self._pooled()
        if t.size == 0:
            raise NotComputableError(
                f"{type(self).__name__} needs at least one labelled voxel (target != ignore_index="
                f"{self.ignore_index}) before it can be computed."
            )
        self.scores = _cached_scores(p, t, self.n_classes)
        return float(self.scores[self.key])


class AccuracyMetric(PooledClassificationMetric):
    """Pooled voxel accuracy (argmax), ignore index excluded; see :class:`PooledClassificationMetric`."""

    def __init__(self, n_classes: int, **kwargs: Any) -> None:
        super().__init__(n_classes, key="accuracy", **kwargs)


class MacroF1Metric(PooledClassificationMetric):
    """Pooled macro F1 (classes labelled or predicted); see :class:`PooledClassificationMetric`."""

    def __init__(self, n_classes: int, **kwargs: Any) -> None:
        super().__init__(n_classes, key="macro_f1", **kwargs)


class MacroAPMetric(PooledClassificationMetric):
    """Pooled macro one-vs-rest average precision (labelled classes); see :class:`PooledClassificationMetric`."""

    def __init__(self, n_classes: int, **kwargs: Any) -> None:
        super().__init__(n_classes, key="macro_ap", **kwargs)


class KappaMetric(PooledClassificationMetric):
    """Pooled Cohen's kappa (argmax vs labels; NaN if undefined); see :class:`PooledClassificationMetric`."""

    def __init__(self, n_classes: int, **kwargs: Any) -> None:
        super().__init__(n_classes, key="kappa", **kwargs)
