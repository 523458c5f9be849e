"""Helpers for bundle configs: where the bundle lives, the default device, run names.

Bundle configs call these from ``$``-expressions; nothing here imports a bundle.
"""

from __future__ import annotations

import dataclasses
import difflib
import gc
import inspect
import json
import os
import pydoc
import sys
import time
from pathlib import Path

import ignite.distributed as idist
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from cseg_monai.tracking import active_bundle_config

__all__ = [
    "bundle_root",
    "bundles_dir",
    "check_config_keys",
    "default_device",
    "known_config_keys",
    "list_bundles",
    "run_name",
    "shutdown_distributed",
]


def bundles_dir() -> Path:
    """The ``bundles/`` folder of the source tree this package was installed from.

    Example:
        >>> bundles_dir().name
        'bundles'
    """
    return Path(__file__).resolve().parents[2] / "bundles"  # cseg_monai/workflows/ -> the checkout


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
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def run_name(prefix: str) -> str:
    """A run name ``PREFIX_YYYYmmdd_HHMMSS`` for MLflow.

    Example:
        >>> run_name("train").startswith("train_")
        True
    """
    return f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}"


# keys MONAI itself adds to a parsed config (metadata, experiment tracking settings)
_MONAI_KEYS = frozenset(
    {"_meta_", "save_execute_config", "tracking_uri", "experiment_name", "run_name", "is_not_rank0",
     "trainer", "validator", "evaluator", "handlers_id", "configs"}
)


def known_config_keys(bundle_dir: str | os.PathLike) -> set[str]:
    """Top-level keys defined by any config file of a bundle (``configs/*.json``).

    An id such as ``"train#trainer#max_epochs"`` in an override file counts as its first part.

    Example:
        >>> "learning_rate" in known_config_keys(bundles_dir() / "isbi2012_em_membrane_segmentation")
        True
    """
    keys: set[str] = set()
    for path in sorted((Path(bundle_dir) / "configs").glob("*.json")):
        if path.name == "metadata.json":
            continue
        try:
            content = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if isinstance(content, dict):
            keys.update(k.split("#", 1)[0] for k in content)
    return keys


def _dataclass_sections(config: dict) -> dict[str, tuple[str, ...]]:
    """Top-level entries built from one of our dataclasses (``InstanceParams``, ``CRFParams``): id -> field names."""
    out: dict[str, tuple[str, ...]] = {}
    for key, value in config.items():
        target = value.get("_target_") if isinstance(value, dict) else None
        if not isinstance(target, str) or not target.startswith("cseg_monai."):
            continue
        cls = pydoc.locate(target)
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            out[key] = tuple(f.name for f in dataclasses.fields(cls))
    return out


# former top-level names of settings that now live in a section (bundle 0.4.0 of the cell bundle)
_RENAMED = {"instance_method": "method", "boundary_threshold": "threshold"}


def _hint(key: str, known: set[str], sections: dict[str, tuple[str, ...]]) -> str:
    name = key.split("#", 1)[0]
    for section, fields in sections.items():
        field = _RENAMED.get(name, name)
        if field in fields:
            return f" (it is now '{section}#{field}')"
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_config_keys(bundle_dir: str | os.PathLike, config: dict | None = None) -> None:
    """Raise a clear ``KeyError`` for config keys no config file of the bundle defines.

    MONAI accepts any ``--key value`` override silently, so a typo such as
    ``--learnig_rate 0.1`` would train with the default learning rate. Bundles call this from
    their ``initialize`` list; ``config`` defaults to the config being run (found on the
    call stack, see :func:`cseg_monai.tracking.active_bundle_config`). Entries built from a
    dataclass of ours (``"instance_params": {"_target_": "cseg_monai.postprocessing.InstanceParams", ...}``)
    have their keys checked against its fields too (``--instance_params#sigma_seed``), and a
    former top-level name of such a field (``--mask_watershed``) is pointed at its new id.

    Args:
        bundle_dir: the bundle's root folder.
        config: the merged config to check.

    Raises:
        KeyError: naming every unknown key and the closest known key.

    Example:
        >>> root = bundles_dir() / "isbi2012_em_membrane_segmentation"
        >>> check_config_keys(root, {"learning_rate": 0.1})
        >>> check_config_keys(root, {"learnig_rate": 0.1})
        Traceback (most recent call last):
        ...
        KeyError: "unknown config key 'learnig_rate' (did you mean 'learning_rate'?): no config file of isbi2012_em_membrane_segmentation defines it"
    """
    if config is None:
        config = active_bundle_config()
        if config is None:
            return
    known = known_config_keys(bundle_dir) | _MONAI_KEYS
    sections = _dataclass_sections(config)
    parts = [f"{k!r}{_hint(k, known, sections)}" for k in sorted(config) if k.split("#", 1)[0] not in known]
    for section, fields in sections.items():
        for sub in sorted(k for k in config[section] if not k.startswith("_") and k not in fields):
            close = difflib.get_close_matches(sub, fields, n=1)
            parts.append(f"'{section}#{sub}'" + (f" (did you mean '{section}#{close[0]}'?)" if close else f" (known: {', '.join(fields)})"))
    if not parts:
        return
    plural = "s" if len(parts) > 1 else ""
    raise KeyError(f"unknown config key{plural} {', '.join(parts)}: no config file of {Path(bundle_dir).name} defines it")


def shutdown_distributed(*modules: object) -> bool:
    """End a ``torch.distributed`` run cleanly: barrier, release the process group, re-sync Ignite.

    ``dist.destroy_process_group`` only drops the registry's reference; a
    ``DistributedDataParallel`` wrapper keeps its own (through its reducer), so the Gloo
    process group used to be destroyed during interpreter shutdown, when its worker threads
    can no longer be joined safely -- one rank then aborted with "terminate called without an
    active exception" after a successful run. Here the wrappers' references are dropped and
    the group is destroyed and garbage-collected while the interpreter is fully alive.

    Args:
        modules: ``DistributedDataParallel`` wrappers (or anything else, ignored) to release.

    Returns:
        ``True`` if a process group was shut down, ``False`` if none was initialised.

    Example:
        >>> shutdown_distributed()  # no process group: nothing to do
        False
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.barrier()
    for module in modules:
        if isinstance(module, DistributedDataParallel):
            for attr in ("reducer", "logger", "process_group"):
                if attr in module.__dict__:
                    module.__dict__[attr] = None
    dist.destroy_process_group()
    idist.sync()  # back to Ignite's serial model: it must not hold the destroyed group
    gc.collect()
    return True
