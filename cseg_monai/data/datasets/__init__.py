"""One module per public data set: its local layout, official source and checksum."""

from __future__ import annotations

import importlib
from typing import Any

_DATASETS = ("isbi2012", "drosophila_vnc", "epfl_ca1", "organelles", "instances", "unlabelled", "synaptic_clefts", "axon_sections")


def __getattr__(name: str) -> Any:
    if name in _DATASETS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
