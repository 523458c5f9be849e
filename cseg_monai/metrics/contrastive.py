"""An Ignite metric for PixPro pretraining: how alike the two views' features are where they show the same pixels.

``update((pred, label))`` takes :class:`cseg_monai.networks.PixPro`'s 8 batched outputs and the
views' coordinate maps (:class:`cseg_monai.transforms.PixProViewsd`); :meth:`compute` gives the
mean cosine similarity between the propagated online features of one view and the target
features of the other over all positive pairs seen (1: identical). Use it with an evaluator that
does not decollate (``"decollate": false``), since the outputs are a tuple of batches.

Example:
    >>> import torch
    >>> from monai.networks.nets import UNet
    >>> from cseg_monai.networks import PixPro
    >>> from cseg_monai.transforms import PixProViewsd
    >>> d = PixProViewsd("image", view_size=(32, 32), seed=1)({"image": torch.rand(1, 64, 64)})
    >>> net = PixPro(UNet(2, 1, 1, (4, 8), (2,)), projection_dim=8, hidden_dim=8).eval()
    >>> m = PositiveSimilarityMetric()
    >>> m.update((net(d["image"][None]), d["label"][None]))
    >>> -1.0 <= m.compute() <= 1.0
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from cseg_monai.common.pretext import positive_similarities

__all__ = ["PositiveSimilarityMetric"]


class PositiveSimilarityMetric(Metric):
    """Mean cosine similarity of PixPro's positive pixel pairs (both directions), pooled over everything seen.

    Args:
        threshold: the positive-pair distance, in cell diagonals (PixPro: 0.7).
        output_transform: gives ``(pred, label)``, e.g. ``from_engine(["pred", "label"])``.
        device: where the accumulators live.
    """

    def __init__(self, threshold: float = 0.7, output_transform: Callable = lambda x: x, device: str | torch.device = "cpu") -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
            raise ValueError(f"threshold must be a number > 0, got {threshold!r}")
        self.threshold = float(threshold)
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._total = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._count = torch.tensor(0.0, dtype=torch.float64, device=self._device)

    @torch.no_grad()
    def iteration_completed(self, engine: Engine) -> None:  # the whole output: Ignite would split a tuple of 8
        self.update(self._output_transform(engine.state.output))

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        pred, coords = output
        total, count = positive_similarities([torch.as_tensor(p).detach().float().cpu() for p in pred], torch.as_tensor(coords).detach().cpu(), self.threshold)
        self._total += total.double().to(self._device)
        self._count += count.double().to(self._device)

    @sync_all_reduce("_total", "_count")
    def compute(self) -> float:
        if self._count.item() == 0:
            raise NotComputableError("PositiveSimilarityMetric: no positive pixel pair was seen (views that do not overlap?)")
        return float(self._total.item() / self._count.item())
