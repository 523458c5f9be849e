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

from cseg_monai.common.pretext import check_threshold, pair_similarities

__all__ = ["PositiveSimilarityMetric"]


class PositiveSimilarityMetric(Metric):
    """Mean cosine similarity of PixPro's positive pixel pairs (both directions), pooled over everything seen.

    A network that collapses (one feature everywhere) scores 1 on the positives too, so
    ``measure="contrast"`` reports how much more alike the positive pairs are than the other
    pairs (the cells showing other places): positive mean minus other mean, 0 when collapsed
    (the key metric that picks the checkpoint); ``measure="other"`` reports the other pairs' mean.

    Args:
        threshold: the positive-pair distance, in cell diagonals (PixPro: 0.7).
        measure: ``"positive"``, ``"other"`` or ``"contrast"``.
        output_transform: gives ``(pred, label)``, e.g. ``from_engine(["pred", "label"])``.
        device: where the accumulators live.
    """

    def __init__(
        self, threshold: float = 0.7, measure: str = "positive", output_transform: Callable = lambda x: x, device: str | torch.device = "cpu"
    ) -> None:
        if measure not in ("positive", "other", "contrast"):
            raise ValueError(f"measure must be 'positive', 'other' or 'contrast', got {measure!r}")
        self.measure = measure
        self.threshold = check_threshold(threshold)
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sums = torch.zeros(4, dtype=torch.float64, device=self._device)  # positive total, count, other total, count

    @torch.no_grad()
    def iteration_completed(self, engine: Engine) -> None:  # the whole output: Ignite would split a tuple of 8
        self.update(self._output_transform(engine.state.output))

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        pred, coords = output
        pred = [torch.as_tensor(p).detach().float().cpu() for p in pred]
        coords = torch.as_tensor(coords).detach().cpu()
        self._sums += pair_similarities(pred, coords, self.threshold).double().to(self._device)

    @sync_all_reduce("_sums")
    def compute(self) -> float:
        pos_total, pos_count, other_total, other_count = self._sums.tolist()
        if pos_count == 0 and self.measure != "other":
            raise NotComputableError("PositiveSimilarityMetric: no positive pixel pair was seen (views that do not overlap?)")
        if other_count == 0 and self.measure != "positive":
            raise NotComputableError("PositiveSimilarityMetric: every pair of cells was positive (views too small for their feature map?)")
        positive = pos_total / pos_count if pos_count else 0.0
        other = other_total / other_count if other_count else 0.0
        return {"positive": positive, "other": other, "contrast": positive - other}[self.measure]
