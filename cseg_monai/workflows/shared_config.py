"""Config shared by every trained bundle: one source (``configs/train_common.json``), checked copies.

The trained bundles' ``train.json`` files have the same engine glue (trainer and evaluator,
data loaders, the checkpoint saver and resume loader, the training handlers with MLflow and the
progress bar, optimiser and schedule, output folders, the ``initialize`` / ``training`` lists).
That part is written once, in ``configs/train_common.json`` at the top of the checkout, as a
MONAI override file (ids such as ``"train#handlers"`` mapping to their value).

Each bundle still carries its own copy, because a bundle must stand alone: MONAI resolves a
``%file#id`` macro against the current directory, not the config's folder, so a reference to a
shared file would break ``python -m monai.bundle run training --config_file
bundles/NAME/configs/train.json`` outside the checkout root, and an exported model-zoo bundle
may not point back into this repository. :func:`shared_config_drift` lists where a bundle's
copy differs from the source (a test runs it on every bundle), and :func:`sync_shared_config`
writes the source into a bundle (``scripts/sync_shared_config.py``, also for a new bundle).

Example:
    >>> from cseg_monai.workflows import bundles_dir
    >>> shared_config_drift(bundles_dir() / "isbi2012_em_membrane_segmentation" / "configs" / "train.json")
    []
"""

from __future__ import annotations

import json
import os
from copy import deepcopy
from pathlib import Path
from typing import Any

from cseg_monai.data.writers import atomic_path
from cseg_monai.workflows.bundle_support import bundles_dir

__all__ = ["SHARED_TRAIN_CONFIG", "load_shared_config", "shared_config_drift", "sync_shared_config"]

#: The one source of the shared training config (``configs/train_common.json`` of the checkout).
SHARED_TRAIN_CONFIG = bundles_dir().parent / "configs" / "train_common.json"

_MISSING = object()


def load_shared_config(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The shared entries, ``{id: value}`` (ids use MONAI's ``#`` separator).

    Args:
        path: the shared file; default :data:`SHARED_TRAIN_CONFIG`.

    Raises:
        FileNotFoundError: no such file. ValueError: not a JSON object.

    Example:
        >>> "train#handlers" in load_shared_config()
        True
    """
    path = Path(path) if path is not None else SHARED_TRAIN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shared bundle config is missing")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a JSON object of config ids, got {type(content).__name__}")
    bad = [cid for cid in content if any(part.isdigit() or not part for part in cid.split("#"))]
    if bad:
        raise ValueError(f"{path}: ids {bad} point into a list or are empty; share whole entries (e.g. 'train#handlers')")
    return content


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON, types included (``true`` is not ``1``, ``1`` is not ``1.0``)."""
    return a is not _MISSING and b is not _MISSING and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _get(config: dict, config_id: str) -> Any:
    node: Any = config
    for part in config_id.split("#"):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(config: dict, config_id: str, value: Any) -> None:
    *parents, last = config_id.split("#")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {config_id!r}: {part!r} is not a section")
    node[last] = deepcopy(value)


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def shared_config_drift(train_json: str | os.PathLike, shared: dict[str, Any] | None = None) -> list[str]:
    """Ids of the shared entries that ``train_json`` lacks or writes differently (empty: in step).

    Args:
        train_json: a bundle's ``train.json``.
        shared: the shared entries; default :func:`load_shared_config`.

    Example:
        >>> import tempfile, json
        >>> bad = Path(tempfile.mkdtemp()) / "train.json"
        >>> _ = bad.write_text(json.dumps({"resume": True}))
        >>> "resume" in shared_config_drift(bad) and "train#handlers" in shared_config_drift(bad)
        True
    """
    shared = load_shared_config() if shared is None else shared
    config = _read_config(Path(train_json))
    return [cid for cid, value in shared.items() if not _same(_get(config, cid), value)]


def sync_shared_config(train_json: str | os.PathLike, shared: dict[str, Any] | None = None) -> list[str]:
    """Write the shared entries into ``train_json`` (kept in place, missing ones appended); return the ids changed.

    The file is replaced atomically (a temporary file renamed over it), so a failure leaves the
    old file whole.

    Example:
        >>> import tempfile, json
        >>> path = Path(tempfile.mkdtemp()) / "train.json"
        >>> _ = path.write_text(json.dumps({"learning_rate": 0.001}))
        >>> len(sync_shared_config(path)) == len(load_shared_config()) and sync_shared_config(path) == []
        True
    """
    path = Path(train_json)
    shared = load_shared_config() if shared is None else shared
    config = _read_config(path)
    changed = [cid for cid, value in shared.items() if not _same(_get(config, cid), value)]
    if not changed:
        return []
    for cid in changed:
        _set(config, cid, shared[cid])
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(config, indent=4, ensure_ascii=False) + "\n")
    return changed
