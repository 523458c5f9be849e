"""cseg-monai: segmentation of EM and light-microscopy volumes, built on MONAI.

Axis order everywhere: spatial axes are (Z, Y, X) for volumes and (Y, X) for images;
arrays handed to networks are channel first, (C, [Z,] Y, X).

Sub-packages are imported on first use (``cseg_monai.metrics`` works after a plain
``import cseg_monai``), which keeps ``import cseg_monai`` and the ``cseg`` command fast and
lets bundle configs say ``"$import cseg_monai"`` once.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("bundle_support", "cli", "data", "handlers", "inferers", "losses", "metrics", "networks", "transforms")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
