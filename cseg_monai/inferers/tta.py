"""Test-time augmentation: average a network's output over flips and in-plane rotations.

The eight symmetries of the square (the dihedral group D4: four rot90s, each with and
without a flip) applied to the last two (Y, X) axes; every prediction is mapped back
before averaging. EM membranes have no preferred orientation, so the average is a free
gain in smoothness and accuracy at 8x the inference cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["dihedral_tta", "DihedralTTAInferer"]


def _transforms(n: int) -> list[tuple[int, bool]]:
    all_eight = [(k, flip) for flip in (False, True) for k in range(4)]
    return all_eight[:n]


def dihedral_tta(
    inputs: torch.Tensor,
    predict: Callable[[torch.Tensor], torch.Tensor],
    n_transforms: int = 8,
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean of ``predict`` over ``n_transforms`` dihedral transforms of the (Y, X) axes.

    Args:
        inputs: batch ``(B, C, [Z,] Y, X)``.
        predict: maps a batch to an output whose last two axes are (Y, X) of the same size.
        n_transforms: 1 (identity only), 2, 4 or 8.
        activation: applied to each prediction before averaging (e.g. ``torch.sigmoid``: average
            probabilities, not logits). The result is then in the activation's range.

    Returns:
        The averaged output, in the input's orientation.

    Example:
        >>> x = torch.rand(1, 1, 8, 8)
        >>> torch.allclose(dihedral_tta(x, lambda t: 2 * t), 2 * x)
        True
    """
    if n_transforms not in (1, 2, 4, 8):
        raise ValueError(f"n_transforms must be 1, 2, 4 or 8, got {n_transforms}")
    total = None
    dims = (-2, -1)
    for k, flip in _transforms(n_transforms):
        x = torch.flip(inputs, dims=(-1,)) if flip else inputs
        x = torch.rot90(x, k, dims)
        y = predict(x)
        if activation is not None:
            y = activation(y)
        y = torch.rot90(y, -k, dims)
        y = torch.flip(y, dims=(-1,)) if flip else y
        total = y if total is None else total + y
    return total / n_transforms


class DihedralTTAInferer(Inferer):
    """Wrap another MONAI inferer (e.g. ``SlidingWindowInferer``) with dihedral TTA.

    Args:
        inferer: the inner inferer (``None``: call the network directly).
        n_transforms: 1, 2, 4 or 8 dihedral transforms.
        activation: ``"sigmoid"``, ``"softmax"`` or ``None``; applied to each prediction
            before averaging. With an activation the output is a probability, so do not
            apply it again in post-processing.

    Example:
        >>> from monai.inferers import SlidingWindowInferer
        >>> inf = DihedralTTAInferer(SlidingWindowInferer(roi_size=(8, 8)), n_transforms=4)
        >>> inf(torch.rand(1, 1, 16, 16), lambda t: t).shape
        torch.Size([1, 1, 16, 16])
    """

    def __init__(self, inferer: Inferer | None = None, n_transforms: int = 8, activation: str | None = None) -> None:
        super().__init__()
        if n_transforms not in (1, 2, 4, 8):
            raise ValueError(f"n_transforms must be 1, 2, 4 or 8, got {n_transforms}")
        acts = {None: None, "sigmoid": torch.sigmoid, "softmax": lambda t: torch.softmax(t, dim=1)}
        if activation not in acts:
            raise ValueError(f"activation must be one of {list(acts)}, got {activation!r}")
        self.inferer = inferer
        self.n_transforms = n_transforms
        self.activation = acts[activation]

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Sequence[Any], **kwargs: Any) -> Any:
        def predict(x: torch.Tensor) -> torch.Tensor:
            if self.inferer is None:
                return network(x, *args, **kwargs)
            return self.inferer(x, network, *args, **kwargs)

        return dihedral_tta(inputs, predict, self.n_transforms, self.activation)
