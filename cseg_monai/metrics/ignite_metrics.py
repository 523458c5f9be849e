"""Ignite metrics for membrane prediction, usable in MONAI evaluators.

Each metric computes ONE float, so MONAI's ``StatsHandler`` / ``MLFlowHandler`` log it as
a scalar. Use them in a ``SupervisedEvaluator``'s ``key_val_metric`` /
``additional_metrics`` with ``output_transform=from_engine(["pred", "label"])``::

    from monai.handlers import from_engine
    key_val_metric = {"val_v_rand": VRandMetric(output_transform=from_engine(["pred", "label"]))}

``update((y_pred, y))`` takes

* ``y_pred``: the membrane PROBABILITY (after the sigmoid), values in ``[0, 1]``;
* ``y``: the binary membrane mask (1 = membrane);

each either a list/tuple of per-image channel-first tensors or arrays shaped
``(1, H, W)`` (what ``from_engine`` returns after decollation; MetaTensor and GPU
tensors are fine, they are copied to CPU numpy) or a batched tensor/array shaped
``(B, 1, H, W)``. Channel-first 3D items ``(1, Z, Y, X)`` / batches ``(B, 1, Z, Y, X)``
are scored slice by slice, every Z slice counting as one image (2D evaluation as in the
ISBI 2012 challenge). The channel dimension must be 1 (the membrane channel).

The metrics run on CPU (numpy / scipy); ``device`` only sets where the accumulators
live, for Ignite's distributed reduction (``sync_all_reduce``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from cseg_monai.common.caching import ArrayCache
from cseg_monai.metrics._tensors import to_numpy as _to_numpy
from cseg_monai.metrics.membrane import (
    _check_binary,
    _check_probability,
    _check_same_shape,
    _check_thresholds,
    dice_score,
    isbi_scores_per_threshold,
    pixel_error,
)

__all__ = ["PixelErrorMetric", "MembraneDiceMetric", "VRandMetric", "VInfoMetric"]


def _identity(x: Any) -> Any:
    return x


def _channel_first_to_images(name: str, item: np.ndarray) -> list[np.ndarray]:
    """(1, H, W) -> [(H, W)]; (1, Z, Y, X) -> Z images of (Y, X)."""
    if item.ndim not in (3, 4) or item.shape[0] != 1:
        raise ValueError(
            f"{name}: expected a channel-first image (1, H, W) or volume (1, Z, Y, X) with one "
            f"(membrane) channel, got shape {tuple(item.shape)}"
        )
    img = item[0]
    return [img] if img.ndim == 2 else list(img)


def _split_images(name: str, x: Any) -> list[np.ndarray]:
    """Turn a list of channel-first items or a batched tensor into a list of 2D images."""
    if isinstance(x, (list, tuple)):
        items = [_to_numpy(i) for i in x]
    else:
        arr = _to_numpy(x)
        if arr.ndim not in (4, 5):
            raise ValueError(
                f"{name}: expected a batch (B, 1, H, W) / (B, 1, Z, Y, X) or a list of "
                f"channel-first (1, H, W) items, got an array of shape {tuple(arr.shape)}"
            )
        items = list(arr)
    images: list[np.ndarray] = []
    for item in items:
        images.extend(_channel_first_to_images(name, item))
    return images


class _MembraneMetric(Metric):
    """Shared input handling: splits ``(y_pred, y)`` into 2D images for ``_update_image``."""

    def __init__(
        self,
        output_transform: Callable = _identity,
        device: str | torch.device = "cpu",
        skip_unrolling: bool = False,
    ) -> None:
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        if not isinstance(output, (list, tuple)) or len(output) != 2:
            raise ValueError(f"{type(self).__name__}.update expects (y_pred, y), got {type(output).__name__}")
        y_pred, y = output
        preds = _split_images("y_pred", y_pred)
        targets = _split_images("y", y)
        if len(preds) != len(targets):
            raise ValueError(f"y_pred holds {len(preds)} images but y holds {len(targets)}")
        for prob, target in zip(preds, targets):
            self._update_image(prob, target)

    def _update_image(self, prob: np.ndarray, target: np.ndarray) -> None:
        raise NotImplementedError

    def _check_computable(self) -> None:
        if self._num_examples == 0:
            raise NotComputableError(f"{type(self).__name__} must have at least one example before it can be computed.")


class _MeanOverImagesMetric(_MembraneMetric):
    """Mean over images of a score of the thresholded mask ``prob > threshold``."""

    def __init__(
        self,
        threshold: float = 0.5,
        output_transform: Callable = _identity,
        device: str | torch.device = "cpu",
        skip_unrolling: bool = False,
    ) -> None:
        self.threshold = float(_check_thresholds([threshold])[0])
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    @staticmethod
    def _score(pred_mask: np.ndarray, target_mask: np.ndarray) -> float:
        raise NotImplementedError

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._num_examples = 0

    def _update_image(self, prob: np.ndarray, target: np.ndarray) -> None:
        p = _check_probability("y_pred", prob)
        t = _check_binary("y", target)
        _check_same_shape("y_pred", p, "y", t)
        self._sum += self._score(p > self.threshold, t)
        self._num_examples += 1

    @sync_all_reduce("_sum", "_num_examples")
    def compute(self) -> float:
        self._check_computable()
        return float(self._sum.item() / self._num_examples)


class PixelErrorMetric(_MeanOverImagesMetric):
    """Mean pixel error of ``prob > threshold`` against the membrane mask (lower is better).

    Args:
        threshold: threshold of the membrane probability.
        output_transform: maps the engine output to ``(y_pred, y)``.
        device: device of the accumulators.
        skip_unrolling: passed to :class:`ignite.metrics.Metric`.
    """

    _score = staticmethod(pixel_error)


class MembraneDiceMetric(_MeanOverImagesMetric):
    """Mean membrane Dice of ``prob > threshold`` (1.0 for an image where both are empty).

    Args:
        threshold: threshold of the membrane probability.
        output_transform: maps the engine output to ``(y_pred, y)``.
        device: device of the accumulators.
        skip_unrolling: passed to :class:`ignite.metrics.Metric`.
    """

    _score = staticmethod(dice_score)


#: a VRandMetric and a VInfoMetric that see the same image in one evaluator run the sweep once
_SCORE_CACHE = ArrayCache(size=16)


def _cached_scores(prob: np.ndarray, target: np.ndarray, thresholds: np.ndarray, thin: bool) -> dict:
    """``isbi_scores_per_threshold``, computed once per image, thresholds and thinning (:data:`_SCORE_CACHE`)."""
    return _SCORE_CACHE.get(
        (prob, target, thresholds), bool(thin), lambda: isbi_scores_per_threshold(prob, target, thresholds=thresholds, thin=thin)
    )


class _BestThresholdMetric(_MembraneMetric):
    """Per-threshold mean over images of an ISBI score; computes the best threshold's mean."""

    _key: str = ""

    def __init__(
        self,
        thin: bool = True,
        thresholds: Sequence[float] | np.ndarray | None = None,
        output_transform: Callable = _identity,
        device: str | torch.device = "cpu",
        skip_unrolling: bool = False,
    ) -> None:
        self.thin = bool(thin)
        self.thresholds = _check_thresholds(thresholds)
        self.best_threshold: float | None = None
        self.scores_per_threshold: np.ndarray | None = None
        super().__init__(output_transform=output_transform, device=device, skip_unrolling=skip_unrolling)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.zeros(self.thresholds.size, dtype=torch.float64, device=self._device)
        self._num_examples = 0
        self.best_threshold = None
        self.scores_per_threshold = None

    def _update_image(self, prob: np.ndarray, target: np.ndarray) -> None:
        per = _cached_scores(prob, target, self.thresholds, self.thin)[self._key]
        self._sum += torch.as_tensor(per, dtype=torch.float64, device=self._device)
        self._num_examples += 1

    @sync_all_reduce("_sum", "_num_examples")
    def compute(self) -> float:
        self._check_computable()
        mean = self._sum.cpu().numpy() / self._num_examples
        best = int(np.argmax(mean))  # first maximum: the lowest threshold wins ties
        self.scores_per_threshold = mean
        self.best_threshold = float(self.thresholds[best])
        return float(mean[best])


class VRandMetric(_BestThresholdMetric):
    """ISBI 2012 V_rand: max over thresholds of the mean over images (higher is better).

    After :meth:`compute`, ``best_threshold`` holds the threshold that gave the maximum
    and ``scores_per_threshold`` the mean score at every threshold.

    Args:
        thin: thin membranes to one pixel before labelling (ISBI 2012 evaluation).
        thresholds: thresholds of the membrane probability; default 0.05, ..., 0.95.
        output_transform: maps the engine output to ``(y_pred, y)``.
        device: device of the accumulators.
        skip_unrolling: passed to :class:`ignite.metrics.Metric`.
    """

    _key = "v_rand"


class VInfoMetric(_BestThresholdMetric):
    """ISBI 2012 V_info: max over thresholds of the mean over images (higher is better).

    After :meth:`compute`, ``best_threshold`` holds the threshold that gave the maximum
    and ``scores_per_threshold`` the mean score at every threshold.

    Args:
        thin: thin membranes to one pixel before labelling (ISBI 2012 evaluation).
        thresholds: thresholds of the membrane probability; default 0.05, ..., 0.95.
        output_transform: maps the engine output to ``(y_pred, y)``.
        device: device of the accumulators.
        skip_unrolling: passed to :class:`ignite.metrics.Metric`.
    """

    _key = "v_info"
