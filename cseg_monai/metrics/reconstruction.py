"""Ignite metrics for masked image modelling: the reconstruction error on the hidden voxels only,
and its gain over the masked input.

``update((y_pred, y))`` takes the reconstruction ``(C, *spatial)`` per item (or a batch) and the
target ``(C + 1, *spatial)`` that :class:`cseg_monai.transforms.MaskCubesd` writes (the original
channels, then the mask). Fed the masked input instead of a prediction
(``from_engine(["image", "label"])``) it scores the no-network baseline: what the hidden cubes
hold after dropout or shuffling. :class:`MaskedGainMetric` puts the two together, higher being
better (the key metric that picks the best checkpoint): ``1 - error(prediction) / error(masked input)``.

Example:
    >>> import torch
    >>> m = MaskedErrorMetric("l1")
    >>> m.update(([torch.zeros(1, 2, 2)], [torch.tensor([[[2.0, 5.0], [5.0, 5.0]], [[1.0, 0.0], [0.0, 0.0]]])]))
    >>> m.compute()
    2.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from cseg_monai.common.pretext import masked_error

__all__ = ["MaskedErrorMetric", "MaskedGainMetric"]


class _WholeOutputMetric(Metric):
    """An Ignite metric whose ``update`` takes the transformed output whole: Ignite would split
    lists of per-item tensors into one update per item, and only for pairs."""

    @torch.no_grad()
    def iteration_completed(self, engine: Engine) -> None:
        self.update(self._output_transform(engine.state.output))


def _batch(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"MaskedErrorMetric: an empty list of {name}")
        return torch.stack([torch.as_tensor(v).detach().float().cpu() for v in value])
    return torch.as_tensor(value).detach().float().cpu()


class MaskedErrorMetric(_WholeOutputMetric):
    """Mean squared (``"mse"``) or absolute (``"l1"``) error over the masked voxels of all items seen.

    Args:
        kind: ``"mse"`` or ``"l1"``.
        output_transform: Ignite's ``output_transform`` (e.g. ``from_engine(["pred", "label"])``).
        device: where the accumulators live.
    """

    def __init__(self, kind: str = "mse", output_transform: Callable = lambda x: x, device: str | torch.device = "cpu") -> None:
        if kind not in ("mse", "l1"):
            raise ValueError(f"kind must be 'mse' or 'l1', got {kind!r}")
        self.kind = kind
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._total = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._count = torch.tensor(0.0, dtype=torch.float64, device=self._device)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        y_pred, y = _batch("predictions", output[0]), _batch("targets", output[1])
        total, count = masked_error(y_pred, y, self.kind)
        self._total += total.double().to(self._device)
        self._count += count.double().to(self._device)

    @sync_all_reduce("_total", "_count")
    def compute(self) -> float:
        if self._count.item() == 0:
            raise NotComputableError("MaskedErrorMetric: no masked voxel was seen")
        return float(self._total.item() / self._count.item())


class MaskedGainMetric(_WholeOutputMetric):
    """``1 - error(prediction) / error(masked input)`` over the masked voxels of all items seen.

    0: no better than what dropout or shuffling left in the cubes; 1: a perfect reconstruction.

    Args:
        kind: ``"mse"`` or ``"l1"``.
        output_transform: gives ``(pred, label, image)``, e.g. ``from_engine(["pred", "label", "image"])``.
        device: where the accumulators live.

    Example:
        >>> import torch
        >>> m = MaskedGainMetric()
        >>> target = torch.tensor([[[2.0, 5.0]], [[1.0, 0.0]]])  # the original (1, 1, 2), then the mask
        >>> m.update(([torch.full((1, 1, 2), 1.0)], [target], [torch.zeros(1, 1, 2)]))
        >>> m.compute()  # error 1 against 4 for the zero-filled input
        0.75
    """

    def __init__(self, kind: str = "mse", output_transform: Callable = lambda x: x, device: str | torch.device = "cpu") -> None:
        if kind not in ("mse", "l1"):
            raise ValueError(f"kind must be 'mse' or 'l1', got {kind!r}")
        self.kind = kind
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._pred = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._base = torch.tensor(0.0, dtype=torch.float64, device=self._device)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        if len(output) != 3:
            raise ValueError("MaskedGainMetric takes (pred, label, image): use from_engine(['pred', 'label', 'image'])")
        y_pred, y, image = (_batch(n, v) for n, v in zip(("predictions", "targets", "images"), output))
        self._pred += masked_error(y_pred, y, self.kind)[0].double().to(self._device)
        self._base += masked_error(image, y, self.kind)[0].double().to(self._device)

    @sync_all_reduce("_pred", "_base")
    def compute(self) -> float:
        if self._base.item() == 0:
            raise NotComputableError("MaskedGainMetric: no masked voxel, or a masked input that already equals the original")
        return float(1.0 - self._pred.item() / self._base.item())
