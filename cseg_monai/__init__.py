"""cseg-monai: segmentation of EM and light-microscopy volumes, built on MONAI.

Axis order everywhere: spatial axes are (Z, Y, X) for volumes and (Y, X) for images;
arrays handed to networks are channel first, (C, [Z,] Y, X).

Sub-packages are imported on first use (``cseg_monai.metrics`` works after a plain
``import cseg_monai``), which keeps ``import cseg_monai`` and the ``cseg`` command fast and
lets bundle configs say ``"$import cseg_monai"`` once. They form layers, lowest first; a
module imports only from its own layer's sub-package or from lower layers (enforced by
``tests/test_layering.py``):

====  ===========================================================
0     ``common`` (constants, checks, tiling, errors, paths)
1     ``data`` (readers, datasets, phantoms, writers)
2     ``transforms``, ``networks``, ``losses``, ``metrics``
3     ``inferers``, ``postprocessing``
4     ``visualisation`` (pictures), ``tracking`` (MLflow)
5     ``handlers`` (Ignite)
6     ``workflows`` (bundle support, launching, the CRF workflow)
7     ``apps`` (the web GUI)
8     ``cli`` (the ``cseg`` command)
====  ===========================================================

Example:
    >>> import cseg_monai
    >>> cseg_monai.common.IGNORE_INDEX
    255
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: sub-package -> layer (lowest first); ``tests/test_layering.py`` checks every import against it
LAYERS: dict[str, int] = {
    "common": 0,
    "data": 1,
    "transforms": 2,
    "networks": 2,
    "losses": 2,
    "metrics": 2,
    "inferers": 3,
    "postprocessing": 3,
    "visualisation": 4,
    "tracking": 4,
    "handlers": 5,
    "workflows": 6,
    "apps": 7,
    "cli": 8,
}


def __getattr__(name: str) -> Any:
    if name in LAYERS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(LAYERS))
