"""Pick one output of a network that returns several (a VAE's reconstruction of ``(recon, mean, logvar)``).

Example:
    >>> import torch
    >>> OutputIndexInferer(0)(torch.ones(1, 2), lambda x: (2 * x, x, x)).tolist()
    [[2.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["OutputIndexInferer"]


class OutputIndexInferer(Inferer):
    """Run ``network(inputs)`` and return element ``index`` of a tuple or list result (a tensor passes through).

    Args:
        index: which output to keep.

    Raises:
        ValueError: a negative or non-integer index; IndexError: the network returned fewer outputs.
    """

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"index must be a whole number >= 0, got {index!r}")
        self.index = index

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        out = network(inputs, *args, **kwargs)
        if isinstance(out, (tuple, list)):
            if self.index >= len(out):
                raise IndexError(f"the network returned {len(out)} outputs, output {self.index} was asked for")
            return out[self.index]
        return out
