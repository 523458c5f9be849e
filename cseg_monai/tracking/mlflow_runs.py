"""One place for MLflow runs: the lookup rule MONAI's ``MLFlowHandler`` follows, configs as params.

MONAI's ``MLFlowHandler`` creates a run on the trainer's ``STARTED`` event; our handlers log
pictures, configs and scores into the SAME run, found by tracking URI, experiment and run
name with :class:`RunLookup`. Workflows that run without Ignite (the CRF) open their own run
with :func:`new_run`.

Example:
    >>> import tempfile
    >>> uri = "sqlite:///" + tempfile.mkdtemp() + "/mlruns.db"
    >>> RunLookup(uri, "nothing yet", None, warn=False).run_id() is None
    True
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Param
from monai.bundle import ConfigParser

__all__ = ["RunLookup", "active_bundle_config", "find_run_id", "flatten_config", "log_config", "new_run"]

logger = logging.getLogger(__name__)

#: MLflow refuses longer parameter values.
MAX_PARAM_LEN = 500
_MAX_PARAM_KEY = 250
_BATCH = 100  # MLflow takes at most 100 params per batch


def find_run_id(client: mlflow.MlflowClient, experiment_name: str, run_name: str | None) -> str | None:
    """The id of the newest RUNNING run of ``experiment_name`` (named ``run_name`` if given).

    This is the rule MONAI's ``MLFlowHandler`` follows to pick its run, so handlers that use
    the same three settings log into the same run.

    Example:
        >>> import tempfile
        >>> client = mlflow.MlflowClient("sqlite:///" + tempfile.mkdtemp() + "/m.db")
        >>> find_run_id(client, "nothing", None) is None
        True
    """
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    for run in runs:
        if run.info.status == "RUNNING" and (run_name is None or run.info.run_name == run_name):
            return run.info.run_id
    return None


class RunLookup:
    """The MLflow run of a bundle, found once (lazily) and then remembered.

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///out/mlruns.db``.
        experiment_name: the run's experiment (as given to MONAI's ``MLFlowHandler``).
        run_name: the run's name; ``None``: the newest running run.
        warn: log a warning when no running run is found.

    Attributes:
        client: the ``mlflow.MlflowClient`` for ``tracking_uri``.
    """

    def __init__(self, tracking_uri: str, experiment_name: str, run_name: str | None = None, warn: bool = True) -> None:
        if not tracking_uri or not experiment_name:
            raise ValueError(
                f"an MLflow run needs a tracking_uri and an experiment_name, got {tracking_uri!r} and {experiment_name!r}"
            )
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.warn = warn
        self._run_id: str | None = None

    def run_id(self) -> str | None:
        """The run's id, or ``None`` while there is no such running run."""
        if self._run_id is None:
            self._run_id = find_run_id(self.client, self.experiment_name, self.run_name)
            if self._run_id is None and self.warn:
                logger.warning(
                    "no running MLflow run in experiment %r (run name %r): attach MONAI's MLFlowHandler first",
                    self.experiment_name,
                    self.run_name,
                )
        return self._run_id

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> bool:
        """Log a file to the run; ``False`` (with a warning) when there is no run or MLflow fails.

        Tracking never stops a training: errors are logged, not raised.
        """
        run_id = self.run_id()
        if run_id is None:
            return False
        try:
            self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)
        except Exception as err:  # tracking must never stop a run
            logger.warning("could not log %s to MLflow run %s: %s", path, run_id, err)
            return False
        return True


def new_run(tracking_uri: str, experiment_name: str, run_name: str | None = None) -> tuple[mlflow.MlflowClient, str]:
    """Create a run (and its experiment if needed) for a workflow without MONAI's handler.

    Returns:
        ``(client, run_id)``; end the run with ``client.set_terminated(run_id)``.

    Example:
        >>> import tempfile
        >>> client, run_id = new_run("sqlite:///" + tempfile.mkdtemp() + "/m.db", "crf", "demo")
        >>> client.get_run(run_id).info.run_name
        'demo'
    """
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    exp_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    run = client.create_run(exp_id, run_name=run_name)
    return client, run.info.run_id


def flatten_config(config: Any, prefix: str = "", max_len: int = MAX_PARAM_LEN) -> dict[str, str]:
    """Flatten a nested config into ``{"a/b/0": "value"}``.

    MONAI's id separator ``#`` is written ``/`` (MLflow refuses ``#`` in parameter names);
    values are cut to ``max_len`` characters.

    Example:
        >>> flatten_config({"lr": 0.1, "net": {"channels": [16, 32]}})
        {'lr': '0.1', 'net/channels/0': '16', 'net/channels/1': '32'}
    """
    out: dict[str, str] = {}
    if isinstance(config, dict):
        items = config.items()
    elif isinstance(config, (list, tuple)):
        items = enumerate(config)
    else:
        out[prefix or "value"] = str(config)[:max_len]
        return out
    for key, value in items:
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, (dict, list, tuple)) and len(value) > 0:
            out.update(flatten_config(value, name, max_len))
        else:
            out[name] = str(value)[:max_len]
    return out


def log_config(client: mlflow.MlflowClient, run_id: str, config: dict) -> None:
    """Log ``config`` to a run: flattened params not logged yet, and the artifact ``config/config.json``."""
    logged = client.get_run(run_id).data.params
    params = [
        Param(k[:_MAX_PARAM_KEY], v) for k, v in flatten_config(config).items() if k[:_MAX_PARAM_KEY] not in logged
    ]
    for start in range(0, len(params), _BATCH):
        client.log_batch(run_id, params=params[start : start + _BATCH])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(config, indent=2, default=str))
        client.log_artifact(run_id, str(path), artifact_path="config")


def active_bundle_config() -> dict | None:
    """The merged config of the MONAI ``ConfigParser`` that is instantiating the caller, if any.

    Handlers declared in a bundle config are built by ``ConfigParser.get_parsed_content``;
    walking up the call stack to that parser gives the config as the user ran it, with every
    command-line override merged in, however the bundle was launched.

    Example:
        >>> active_bundle_config() is None  # not called from a bundle config
        True
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, ConfigParser):
                return copy.deepcopy(candidate.get())
            frame = frame.f_back
    finally:
        del frame
    return None
