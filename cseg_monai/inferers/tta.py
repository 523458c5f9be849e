"""Test-time augmentation: average a network's output over flips and the y/x transpose.

A transform is ``(flip_z, flip_y, flip_x, transpose)``: the flips first, then the swap of the
last two (Y, X) axes; it is undone (transpose back, then the same flips) on each prediction
before the reduction. :data:`~cseg_monai.common.flips.FLIP_TRANSPOSE_16` lists the 16 combinations for 3D inputs, in an
order whose first 1, 2, 4, 8 are useful subsets:

* the first 8 leave z alone: they are the dihedral group D4 of the (Y, X) square, the eight
  symmetries :func:`dihedral_tta` averages over (four rot90s, each with and without a flip),
  listed in its order (identity, rot90, rot180, rot270, then each after an x flip);
* the last 8 are the same after a z flip (serial-section EM has no preferred direction in z
  either: the 16-fold TTA of synapse detectors).

EM has no preferred orientation, so the average is a free gain in smoothness and accuracy at
``n`` times the inference cost. ``reduce="max"`` keeps the most confident prediction per voxel
instead (for rare, thin targets such as synaptic clefts).

Example:
    >>> x = torch.rand(1, 1, 4, 8, 8)
    >>> torch.allclose(flip_transpose_tta(x, lambda t: 2 * t, 16), 2 * x)  # an equivariant model: unchanged
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

from cseg_monai.common.flips import FLIP_TRANSPOSE_16, FlipTranspose, apply_flip_transpose, undo_flip_transpose

__all__ = ["FLIP_TRANSPOSE_16", "apply_flip_transpose", "undo_flip_transpose", "flip_transpose_tta", "FlipTransposeTTAInferer",
           "dihedral_tta", "DihedralTTAInferer"]  # fmt: skip

_ACTIVATIONS: dict[str | None, Callable[[torch.Tensor], torch.Tensor] | None] = {
    None: None,
    "sigmoid": torch.sigmoid,
    "softmax": lambda t: torch.softmax(t, dim=1),
}


def _select(n_transforms: int | Sequence[Sequence[bool]], ndim: int) -> list[FlipTranspose]:
    if isinstance(n_transforms, int) and not isinstance(n_transforms, bool):
        if n_transforms not in (1, 2, 4, 8, 16):
            raise ValueError(f"n_transforms must be 1, 2, 4, 8 or 16 (or a list of (flip_z, flip_y, flip_x, transpose)), got {n_transforms}")
        if n_transforms == 16 and ndim < 5:
            raise ValueError("16 transforms need (B, C, Z, Y, X) inputs (8 of them flip z); 2D inputs have 8 (n_transforms=8)")
        return list(FLIP_TRANSPOSE_16[:n_transforms])
    chosen = [tuple(bool(v) for v in t) for t in n_transforms]
    if not chosen or any(len(t) != 4 for t in chosen):
        raise ValueError(f"transforms must be a non-empty list of (flip_z, flip_y, flip_x, transpose), got {n_transforms!r}")
    return chosen  # type: ignore[return-value]


def flip_transpose_tta(
    inputs: torch.Tensor,
    predict: Callable[[torch.Tensor], torch.Tensor],
    n_transforms: int | Sequence[Sequence[bool]] = 16,
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    reduce: str = "mean",
) -> torch.Tensor:
    """Reduce ``predict`` over flips and y/x transposes of ``inputs``, each prediction undone first.

    Args:
        inputs: batch ``(B, C, Z, Y, X)`` or ``(B, C, Y, X)``; with a transpose, Y and X may differ
            only if ``predict`` accepts both orientations (the output is transposed back).
        predict: maps a batch to an output whose last axes are the input's spatial axes.
        n_transforms: the first 1, 2, 4, 8 or 16 of :data:`FLIP_TRANSPOSE_16` (16: 3D only), or
            an explicit list of ``(flip_z, flip_y, flip_x, transpose)``.
        activation: applied to each prediction before the reduction (e.g. ``torch.sigmoid``:
            reduce probabilities, not logits).
        reduce: ``"mean"`` or ``"max"`` (voxel-wise, over the transforms).

    Returns:
        The reduced output, in the input's orientation.

    Example:
        >>> x = torch.rand(2, 1, 4, 6, 6)
        >>> torch.equal(flip_transpose_tta(x, lambda t: t, 16, reduce="max"), x)
        True
    """
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    if inputs.ndim not in (4, 5):
        raise ValueError(f"inputs must be (B, C, Y, X) or (B, C, Z, Y, X), got shape {tuple(inputs.shape)}")
    transforms = _select(n_transforms, inputs.ndim)
    total = None
    for transform in transforms:
        y = predict(apply_flip_transpose(inputs, transform))
        if activation is not None:
            y = activation(y)
        y = undo_flip_transpose(y, transform)
        if total is None:
            total = y
        else:
            total = total + y if reduce == "mean" else torch.maximum(total, y)
    assert total is not None
    return total / len(transforms) if reduce == "mean" else total


class FlipTransposeTTAInferer(Inferer):
    """Wrap another MONAI inferer (e.g. ``SlidingWindowInferer``) with flip / transpose TTA (16-fold in 3D).

    Args:
        inferer: the inner inferer (``None``: call the network directly).
        n_transforms: 1, 2, 4, 8 or 16 (see :func:`flip_transpose_tta`).
        activation: ``"sigmoid"``, ``"softmax"`` or ``None``; applied to each prediction before
            the reduction. With an activation the output is a probability: do not apply it again.
        reduce: ``"mean"`` or ``"max"``.

    Example:
        >>> from monai.inferers import SlidingWindowInferer
        >>> inf = FlipTransposeTTAInferer(SlidingWindowInferer(roi_size=(2, 8, 8)), n_transforms=16, activation="sigmoid")
        >>> inf(torch.rand(1, 1, 4, 16, 16), lambda t: t).shape
        torch.Size([1, 1, 4, 16, 16])
    """

    def __init__(self, inferer: Inferer | None = None, n_transforms: int = 16, activation: str | None = None, reduce: str = "mean") -> None:
        super().__init__()
        _select(n_transforms, 5)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, got {activation!r}")
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
        self.inferer, self.n_transforms, self.reduce = inferer, n_transforms, reduce
        self.activation = _ACTIVATIONS[activation]

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Sequence[Any], **kwargs: Any) -> Any:
        def predict(x: torch.Tensor) -> torch.Tensor:
            if self.inferer is None:
                return network(x, *args, **kwargs)
            return self.inferer(x, network, *args, **kwargs)

        return flip_transpose_tta(inputs, predict, self.n_transforms, self.activation, self.reduce)


def dihedral_tta(
    inputs: torch.Tensor,
    predict: Callable[[torch.Tensor], torch.Tensor],
    n_transforms: int = 8,
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Mean of ``predict`` over ``n_transforms`` dihedral transforms of the (Y, X) axes: the first
    1, 2, 4 or 8 of :data:`FLIP_TRANSPOSE_16` (no z flip), i.e. ``rot90(flip_x^f(x), k)`` for
    ``(k, f)`` in ``(0, no), (1, no), (2, no), (3, no), (0, yes), ...``.

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
    return flip_transpose_tta(inputs, predict, n_transforms, activation, "mean")


class DihedralTTAInferer(FlipTransposeTTAInferer):
    """Wrap another MONAI inferer (e.g. ``SlidingWindowInferer``) with dihedral TTA: a
    :class:`FlipTransposeTTAInferer` limited to the first 1, 2, 4 or 8 transforms (no z flip), averaged.

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
        if n_transforms not in (1, 2, 4, 8):
            raise ValueError(f"n_transforms must be 1, 2, 4 or 8, got {n_transforms}")
        super().__init__(inferer, n_transforms, activation, reduce="mean")
