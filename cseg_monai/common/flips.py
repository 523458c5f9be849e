"""The 16 flips and y/x transposes of a volume: what test-time augmentation averages over and
what EM augmentation draws from.

A transform is ``(flip_z, flip_y, flip_x, transpose)``: the flips first, then the swap of the
last two (Y, X) axes; :func:`undo_flip_transpose` inverts it (transpose back, then the same
flips). :data:`FLIP_TRANSPOSE_16` lists the 16 in an order whose first 1, 2, 4, 8 are useful
subsets: the first 8 leave z alone and are the dihedral group D4 of the (Y, X) square in
``rot90(flip_x^f(x), k)`` order (``(k, f)`` = ``(0, no), (1, no), (2, no), (3, no), (0, yes), ...``),
the last 8 are the same after a z flip.

Example:
    >>> x = torch.arange(4).view(1, 1, 2, 2)
    >>> torch.equal(apply_flip_transpose(x, FLIP_TRANSPOSE_16[1]), torch.rot90(x, 1, (-2, -1)))
    True
"""

from __future__ import annotations

import torch

__all__ = ["FlipTranspose", "FLIP_TRANSPOSE_16", "apply_flip_transpose", "undo_flip_transpose"]

FlipTranspose = tuple[bool, bool, bool, bool]

_D4 = [(False, False, False), (False, True, True), (True, True, False), (True, False, True),
       (False, True, False), (False, False, True), (True, False, False), (True, True, True)]  # fmt: skip
#: the 16 ``(flip_z, flip_y, flip_x, transpose)`` transforms: D4 of (Y, X) in dihedral order, then each after a z flip.
FLIP_TRANSPOSE_16: tuple[FlipTranspose, ...] = tuple((fz, fy, fx, t) for fz in (False, True) for fy, fx, t in _D4)


def _flip_dims(x: torch.Tensor, transform: FlipTranspose) -> list[int]:
    flip_z, flip_y, flip_x, _ = transform
    if flip_z and x.ndim < 5:
        raise ValueError(f"a z flip needs (B, C, Z, Y, X) inputs, got shape {tuple(x.shape)}")
    return [d for d, f in ((-3, flip_z), (-2, flip_y), (-1, flip_x)) if f]


def apply_flip_transpose(x: torch.Tensor, transform: FlipTranspose) -> torch.Tensor:
    """The flips of ``transform`` on the last three (Z, Y, X) axes, then the y/x transpose.

    Example:
        >>> apply_flip_transpose(torch.arange(4).view(1, 1, 2, 2), (False, True, False, True)).flatten().tolist()
        [2, 0, 3, 1]
    """
    dims = _flip_dims(x, transform)
    x = torch.flip(x, dims) if dims else x
    return x.transpose(-2, -1) if transform[3] else x


def undo_flip_transpose(y: torch.Tensor, transform: FlipTranspose) -> torch.Tensor:
    """The inverse of :func:`apply_flip_transpose`: transpose back, then the same flips.

    Example:
        >>> x = torch.rand(1, 1, 3, 4, 4); t = (True, False, True, True)
        >>> torch.equal(undo_flip_transpose(apply_flip_transpose(x, t), t), x)
        True
    """
    y = y.transpose(-2, -1) if transform[3] else y
    dims = _flip_dims(y, transform)
    return torch.flip(y, dims) if dims else y
