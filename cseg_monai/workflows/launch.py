"""One way to launch a bundle workflow, used by the CLI, the GUI, the tests and the scripts.

In-process: :func:`bundle_workflow` builds a MONAI ``ConfigWorkflow`` over a bundle's config
files (merged in order, ``--key value`` overrides on top), :func:`run_bundle` also
initialises, runs and finalises it. In a new process: :func:`bundle_command` is the matching
``python -m monai.bundle run ...`` command line.

Example:
    >>> cmd = bundle_command("isbi2012_em_membrane_segmentation", ["train.json"], "training", max_epochs=1)
    >>> cmd[1:5], cmd[-2:]
    (['-m', 'monai.bundle', 'run', 'training'], ['--max_epochs', '1'])
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

from cseg_monai.workflows.bundle_support import bundles_dir, list_bundles

__all__ = ["bundle_command", "bundle_workflow", "config_files", "resolve_bundle", "run_bundle"]

_WORKFLOW_TYPES = ("train", "training", "eval", "evaluating", "infer", "inference")


def resolve_bundle(bundle: str | os.PathLike) -> Path:
    """A bundle's root folder from its name (under :func:`bundles_dir`) or its path.

    Raises:
        ValueError: neither a bundle folder (with ``configs/metadata.json``) nor a known name.

    Example:
        >>> resolve_bundle("isbi2012_em_membrane_segmentation").name
        'isbi2012_em_membrane_segmentation'
    """
    path = Path(bundle)
    if (path / "configs" / "metadata.json").is_file():
        return path.resolve()
    candidate = bundles_dir() / str(bundle)
    if (candidate / "configs" / "metadata.json").is_file():
        return candidate
    raise ValueError(f"unknown bundle {str(bundle)!r}: not a bundle folder, and not one of {list_bundles()}")


def config_files(bundle_dir: str | os.PathLike, names: Sequence[str]) -> list[str]:
    """Paths of config files of a bundle: names in its ``configs/`` folder (or paths); each must exist.

    Raises:
        FileNotFoundError: naming the missing file.
    """
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of config file names, got {names!r}")
    files = []
    for name in names:
        path = Path(name) if os.path.isabs(name) else Path(bundle_dir) / "configs" / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        files.append(str(path))
    return files


def bundle_workflow(
    bundle: str | os.PathLike,
    configs: Sequence[str],
    workflow_type: str,
    run_id: str = "run",
    logging_file: str | bool | None = None,
    **override: Any,
) -> ConfigWorkflow:
    """A MONAI ``ConfigWorkflow`` over a bundle's ``configs`` (merged in order), not yet initialised.

    Args:
        bundle: name or folder of the bundle.
        configs: config file names in its ``configs/`` folder, e.g. ``["train.json", "evaluate.json"]``.
        workflow_type: ``"train"``, ``"eval"`` or ``"infer"`` (MONAI's names).
        run_id: the config's list of expressions to run (``"run"``, ``"training"``, ...).
        logging_file: a logging config; default the bundle's ``configs/logging.conf``; ``False`` for none.
        override: config ids and values, as ``--key value`` on the command line.
    """
    if workflow_type not in _WORKFLOW_TYPES:
        raise ValueError(f"workflow_type must be one of {list(_WORKFLOW_TYPES)}, got {workflow_type!r}")
    root = resolve_bundle(bundle)
    files = config_files(root, configs)
    if logging_file is None:
        logging_file = str(root / "configs" / "logging.conf")
    override.setdefault("bundle_root", str(root))
    return ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=logging_file,
        workflow_type=workflow_type,
        run_id=run_id,
        **override,
    )


def run_bundle(
    bundle: str | os.PathLike, configs: Sequence[str], workflow_type: str, run_id: str = "run", **override: Any
) -> Any:
    """Build, initialise, run and finalise a bundle workflow in this process; return what ``run`` returns.

    Example:
        ``run_bundle("isbi2012_em_membrane_segmentation", ["inference.json"], "infer", dataset_dir="imgs")``
    """
    workflow = bundle_workflow(bundle, configs, workflow_type, run_id, **override)
    workflow.initialize()
    try:
        return workflow.run()
    finally:
        workflow.finalize()


def _cli_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def bundle_command(
    bundle: str | os.PathLike,
    configs: Sequence[str],
    run_id: str = "run",
    extra_args: Sequence[str] = (),
    python: str | None = None,
    **override: Any,
) -> list[str]:
    """The ``python -m monai.bundle run RUN_ID --config_file ... --key value`` command line of a bundle run.

    Args:
        bundle: name or folder of the bundle.
        configs: config file names in its ``configs/`` folder, merged in order.
        run_id: the config's list of expressions to run.
        extra_args: more command-line words, as given (e.g. ``["--max_epochs", "5"]``).
        python: the interpreter; default this one.
        override: config ids and values; non-strings are written as JSON (``--max_epochs 1``).

    Returns:
        The argument list, for ``subprocess.run``.
    """
    root = resolve_bundle(bundle)
    files = config_files(root, configs)
    config_arg = files[0] if len(files) == 1 else "[" + ",".join(f"'{f}'" for f in files) + "]"
    cmd = [python or sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config_arg,
           "--meta_file", str(root / "configs" / "metadata.json"),
           "--logging_file", str(root / "configs" / "logging.conf")]  # fmt: skip
    for key, value in override.items():
        cmd += [f"--{key}", _cli_value(value)]
    return cmd + [str(a) for a in extra_args]
