"""Helpers for bundle configs: where the bundle lives, the default device, run names.

Bundle configs call these from ``$``-expressions; nothing here imports a bundle.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from pathlib import Path

__all__ = ["bundle_root", "bundles_dir", "list_bundles", "default_device", "run_name"]


def bundles_dir() -> Path:
    """The ``bundles/`` folder of the source tree this package was installed from.

    Example:
        >>> bundles_dir().name
        'bundles'
    """
    return Path(__file__).resolve().parents[1] / "bundles"


def list_bundles() -> list[str]:
    """Names of the bundles under :func:`bundles_dir` (folders with ``configs/metadata.json``).

    Example:
        >>> "isbi2012_em_membrane_segmentation" in list_bundles()
        True
    """
    root = bundles_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "configs" / "metadata.json").is_file())


def _config_root_from_stack() -> Path | None:
    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            try:  # not getattr: a ConfigParser answers unknown attributes from its config
                root = vars(owner).get("config_root_path") if hasattr(owner, "__dict__") else None
            except TypeError:
                root = None
            if root is not None:
                return Path(root)
            for name in ("config_file", "config_file_"):
                value = frame.f_locals.get(name)
                if isinstance(value, (list, tuple)) and value:
                    value = value[0]
                if isinstance(value, (str, os.PathLike)) and str(value).endswith(".json"):
                    return Path(value).resolve().parent
            frame = frame.f_back
    finally:
        del frame
    return None


def _config_root_from_argv() -> Path | None:
    argv = sys.argv
    for i, arg in enumerate(argv):
        value = None
        if arg == "--config_file" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config_file="):
            value = arg.split("=", 1)[1]
        if value:
            first = value.strip("[]").split(",")[0].strip().strip("'\"")
            if first.endswith(".json"):
                return Path(first).resolve().parent
    return None


def bundle_root(name: str) -> str:
    """The root folder of bundle ``name``, wherever the command was started from.

    Looked up, in order: the folder of the config file being run (``configs/..``), found
    from the running MONAI ``ConfigWorkflow`` or the ``--config_file`` argument; then the
    ``bundles/<name>`` folder of this source tree. Override with ``--bundle_root DIR``.

    Args:
        name: the bundle's folder name, used for the fallback.

    Example:
        >>> Path(bundle_root("isbi2012_em_membrane_segmentation")).name
        'isbi2012_em_membrane_segmentation'
    """
    for root in (_config_root_from_stack(), _config_root_from_argv()):
        if root is not None and root.name == "configs" and (root / "metadata.json").is_file():
            return str(root.parent)
    return str(bundles_dir() / name)


def default_device():
    """``cuda:0`` when a GPU is present, else ``cpu``.

    Example:
        >>> str(default_device()) in ("cpu", "cuda:0")
        True
    """
    import torch

    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def run_name(prefix: str) -> str:
    """A run name ``PREFIX_YYYYmmdd_HHMMSS`` for MLflow.

    Example:
        >>> run_name("train").startswith("train_")
        True
    """
    return f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}"
