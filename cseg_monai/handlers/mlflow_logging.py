"""Ignite handlers that complete MONAI's ``MLFlowHandler``: config, pictures, best checkpoint.

MONAI's ``MLFlowHandler`` logs the loss per iteration and the metrics per epoch. These
handlers add, to the SAME run (found by tracking URI, experiment and run name):

- :class:`MLflowConfigLogger` (trainer): the merged bundle config, as flattened params and
  as the artifact ``config/config.json``;
- :class:`MLflowValidationLogger` (evaluator): after every validation, a PNG overlay of one
  prediction (``overlays/``), a learning-curve PNG (``plots/learning_curve.png``) and the
  best checkpoint when the key metric improved (``checkpoints/``).

Attach them AFTER MONAI's ``MLFlowHandler`` (which creates the run on ``STARTED``).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import tempfile
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from cseg_monai.data.writers import atomic_path

__all__ = [
    "find_run_id",
    "flatten_config",
    "active_bundle_config",
    "overlay_picture",
    "class_overlay_picture",
    "instance_overlay_picture",
    "CLASS_COLOURS",
    "MLflowConfigLogger",
    "MLflowValidationLogger",
]

logger = logging.getLogger(__name__)
_MAX_PARAM_LEN = 500


def find_run_id(client: Any, experiment_name: str, run_name: str | None) -> str | None:
    """The id of the newest RUNNING run of ``experiment_name`` (named ``run_name`` if given).

    This is the rule MONAI's ``MLFlowHandler`` follows to pick its run, so handlers that use
    the same three settings log into the same run.

    Example:
        >>> import mlflow, tempfile  # doctest: +SKIP
        >>> client = mlflow.MlflowClient("sqlite:///" + tempfile.mkdtemp() + "/m.db")  # doctest: +SKIP
        >>> find_run_id(client, "nothing", None) is None  # doctest: +SKIP
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


def flatten_config(config: Any, prefix: str = "", max_len: int = _MAX_PARAM_LEN) -> dict[str, str]:
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


def active_bundle_config() -> dict | None:
    """The merged config of the MONAI ``ConfigParser`` that is instantiating the caller, if any.

    Handlers declared in a bundle config are built by ``ConfigParser.get_parsed_content``;
    walking up the call stack to that parser gives the config as the user ran it, with every
    command-line override merged in, however the bundle was launched.

    Example:
        >>> active_bundle_config() is None  # not called from a bundle config
        True
    """
    from monai.bundle import ConfigParser

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


class _RunLookup:
    def __init__(self, tracking_uri: str, experiment_name: str, run_name: str | None) -> None:
        import mlflow

        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self.experiment_name = experiment_name
        self.run_name = run_name
        self._run_id: str | None = None

    def run_id(self) -> str | None:
        if self._run_id is None:
            self._run_id = find_run_id(self.client, self.experiment_name, self.run_name)
            if self._run_id is None:
                logger.warning(
                    "no running MLflow run in experiment %r (run name %r): attach MONAI's MLFlowHandler first",
                    self.experiment_name,
                    self.run_name,
                )
        return self._run_id


class MLflowConfigLogger:
    """Log the merged bundle config to the current MLflow run when the trainer starts.

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///out/mlruns.db``.
        experiment_name: experiment of the run (as given to MONAI's ``MLFlowHandler``).
        run_name: run name (as given to MONAI's ``MLFlowHandler``); ``None`` = newest running run.
        config: the config to log; default: the config of the bundle being parsed
            (:func:`active_bundle_config`), captured when this handler is built.

    Example:
        In a bundle's ``train#handlers``, after the ``MLFlowHandler``::

            {"_target_": "cseg_monai.handlers.MLflowConfigLogger", "tracking_uri": "@mlflow_tracking_uri",
             "experiment_name": "@mlflow_experiment_name", "run_name": "@mlflow_run_name"}
    """

    def __init__(
        self, tracking_uri: str, experiment_name: str, run_name: str | None = None, config: dict | None = None
    ) -> None:
        self.lookup = _RunLookup(tracking_uri, experiment_name, run_name)
        self.config = config if config is not None else active_bundle_config()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)

    def started(self, engine: Engine) -> None:
        from mlflow.entities import Param

        run_id = self.lookup.run_id()
        if run_id is None or self.config is None:
            return
        client = self.lookup.client
        logged = client.get_run(run_id).data.params
        params = [Param(k[:250], v) for k, v in flatten_config(self.config).items() if k[:250] not in logged]
        try:
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                client.log_batch(run_id, params=params[start : start + 100])
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "config.json"
                path.write_text(json.dumps(self.config, indent=2, default=str))
                client.log_artifact(run_id, str(path), artifact_path="config")
        except Exception as err:  # tracking must never stop a training
            logger.warning("could not log the config to MLflow run %s: %s", run_id, err)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def _middle_slice(x: np.ndarray) -> np.ndarray:
    """(C, [Z,] Y, X) -> (Y, X): first channel, middle plane."""
    x = x[0] if x.ndim >= 3 else x
    while x.ndim > 2:
        x = x[x.shape[0] // 2]
    return x


def overlay_picture(image: Any, prob: Any, label: Any | None = None, threshold: float = 0.5) -> np.ndarray:
    """An RGB picture ``image | probability | overlay``: prediction red, ground truth green.

    Args:
        image: channel-first image ``(C, [Z,] Y, X)`` (the middle plane of a volume is shown).
        prob: foreground probability, same spatial shape.
        label: binary ground truth, same spatial shape, or ``None``.
        threshold: threshold of ``prob`` for the overlay.

    Returns:
        ``uint8`` array ``(Y, 3 * X + 8, 3)``.

    Example:
        >>> overlay_picture(np.random.rand(1, 8, 8), np.random.rand(1, 8, 8)).shape
        (8, 32, 3)
    """
    img = _middle_slice(_to_numpy(image))
    p = _middle_slice(_to_numpy(prob))
    lo, hi = np.percentile(img, (0.5, 99.5))
    grey = np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1)
    grey_rgb = np.repeat(grey[..., None], 3, axis=-1)
    prob_rgb = np.repeat(np.clip(p, 0, 1)[..., None], 3, axis=-1)
    over = grey_rgb * 0.6
    pred = p > threshold
    over[pred, 0] = 0.4 + 0.6 * over[pred, 0] / 0.6
    if label is not None:
        gt = _middle_slice(_to_numpy(label)) > 0.5
        over[gt, 1] = np.maximum(over[gt, 1], 0.8)
    gap = np.ones((grey.shape[0], 4, 3))
    pic = np.concatenate([grey_rgb, gap, prob_rgb, gap, over], axis=1)
    return (pic * 255).round().astype(np.uint8)


#: RGB colours (0..1) of the organelle classes 0..5 in class pictures.
CLASS_COLOURS = np.array(
    [[0.55, 0.55, 0.55], [1.0, 0.85, 0.1], [0.1, 0.75, 0.2], [0.1, 0.45, 1.0], [1.0, 0.1, 0.1], [0.85, 0.2, 0.95]]
)


def class_overlay_picture(
    image: Any,
    prob: Any,
    label: Any | None = None,
    grid: tuple[Sequence[int], Sequence[int]] | None = None,
    ignore_index: int = 255,
    alpha: float = 0.45,
) -> np.ndarray:
    """An RGB picture ``image | predicted classes | ground truth`` (classes coloured over the image).

    Colours: :data:`CLASS_COLOURS` (cytoplasm grey, membrane yellow, mitochondrion green,
    mitochondrion membrane blue, synapse red, vesicle magenta; more classes cycle); unlabelled
    ground truth (``ignore_index``) shows the bare image.

    Args:
        image: ``(C, [Z,] Y, X)`` image (the middle plane of a volume is shown).
        prob: ``(n_classes, [Z,] Y, X)`` class probabilities or logits (argmax is shown).
        label: ``(1, [Z,] Y, X)`` class ids, or ``None``.
        grid: ``(patch_size, strides)`` when ``prob``/``label`` are the grid output of a
            centre-voxel net on the tile ``image`` (see
            :mod:`cseg_monai.transforms.centre_voxel_tiles`): the image is then sampled at the
            grid's centre voxels so the three panels align.
        ignore_index: unlabelled value of ``label``.
        alpha: opacity of the class colours.

    Returns:
        ``uint8`` array ``(Y, 3 * X + 8, 3)`` (grid pictures are enlarged to >= 256 rows).

    Example:
        >>> class_overlay_picture(np.random.rand(1, 8, 8), np.random.rand(6, 8, 8), np.zeros((1, 8, 8))).shape
        (8, 32, 3)
    """
    img = _to_numpy(image)
    if grid is not None:
        patch, strides = grid
        index = (slice(None),) + tuple(
            slice(p // 2, p // 2 + s * n, s) for p, s, n in zip(patch, strides, _to_numpy(prob).shape[1:])
        )
        img = img[index]
    img = _middle_slice(img)
    p = _to_numpy(prob)
    cls = p.argmax(axis=0)
    while cls.ndim > 2:
        cls = cls[cls.shape[0] // 2]
    lo, hi = np.percentile(img, (0.5, 99.5))
    grey = np.repeat(np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1)[..., None], 3, axis=-1)
    colours = CLASS_COLOURS[np.arange(max(int(p.shape[0]), 1)) % len(CLASS_COLOURS)]
    pred = (1 - alpha) * grey + alpha * colours[cls]
    panels = [grey, pred]
    if label is not None:
        lab = _middle_slice(_to_numpy(label)).astype(np.int64)
        known = (lab != ignore_index) & (lab >= 0) & (lab < len(colours))
        gt = grey.copy()
        gt[known] = (1 - alpha) * grey[known] + alpha * colours[lab[known]]
        panels.append(gt)
    gap = np.ones((grey.shape[0], 4, 3))
    pic = np.concatenate([x for panel in panels for x in (panel, gap)][:-1], axis=1)
    if grid is not None and pic.shape[0] < 256:
        scale = -(-256 // pic.shape[0])
        pic = np.repeat(np.repeat(pic, scale, axis=0), scale, axis=1)
    return (np.clip(pic, 0, 1) * 255).round().astype(np.uint8)


def instance_overlay_picture(image: Any, pred: Any, label: Any | None = None, alpha: float = 0.5) -> np.ndarray:
    """An RGB picture ``image | predicted instances | ground-truth instances`` of the middle plane.

    ``pred`` / ``label`` are instance ids ``(1, [Z,] Y, X)`` (0 = background, shown bare); each
    id gets a colour from a fixed pseudo-random table, so neighbours differ.

    Example:
        >>> instance_overlay_picture(np.random.rand(1, 4, 8, 8), np.ones((1, 4, 8, 8), int)).shape  # enlarged 32x
        (256, 640, 3)
    """
    img = _middle_slice(_to_numpy(image))
    lo, hi = np.percentile(img, (0.5, 99.5))
    grey = np.repeat(np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1)[..., None], 3, axis=-1)
    table = np.random.default_rng(7).uniform(0.15, 1.0, (4096, 3))
    panels = [grey]
    for ids in (pred, label):
        if ids is None:
            continue
        lab = _middle_slice(_to_numpy(ids)).astype(np.int64)
        out = grey.copy()
        fg = lab > 0
        out[fg] = (1 - alpha) * grey[fg] + alpha * table[lab[fg] % len(table)]
        panels.append(out)
    gap = np.ones((grey.shape[0], 4, 3))
    pic = np.concatenate([x for panel in panels for x in (panel, gap)][:-1], axis=1)
    if pic.shape[0] < 256:  # small crops: enlarge (nearest) so that a person can see them
        scale = -(-256 // pic.shape[0])
        pic = pic.repeat(scale, axis=0).repeat(scale, axis=1)
    return (pic * 255).round().astype(np.uint8)


class MLflowValidationLogger:
    """After each validation: overlay PNG, learning curve PNG and improved best checkpoint to MLflow.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment_name: experiment of the run.
        run_name: run name; ``None`` = newest running run.
        output_dir: the PNGs are also kept under ``output_dir/plots``.
        best_checkpoint: path of the best-model file written by a ``CheckpointSaver``
            (``save_key_metric=True``); logged whenever the key metric improves.
        curve_metrics: metric names drawn in the learning curve (with the training loss
            logged by MONAI's handler under ``loss_name``).
        loss_name: name of the per-iteration training loss in MLflow.
        image_key, pred_key, label_key: keys of the evaluator's output items.
        picture: ``"membrane"`` (:func:`overlay_picture`, binary foreground), ``"classes"``
            (:func:`class_overlay_picture`, multi-class argmax) or ``"instances"``
            (:func:`instance_overlay_picture`; ``pred_key`` then names instance ids).
        picture_grid: ``(patch_size, strides)`` for ``"classes"`` pictures of centre-voxel
            grid outputs (see :func:`class_overlay_picture`).

    Example:
        In ``validate#handlers``, after the ``MLFlowHandler`` and the ``CheckpointSaver``::

            {"_target_": "cseg_monai.handlers.MLflowValidationLogger", "tracking_uri": "@mlflow_tracking_uri",
             "experiment_name": "@mlflow_experiment_name", "run_name": "@mlflow_run_name",
             "output_dir": "@output_dir", "best_checkpoint": "$@ckpt_dir + '/model.pt'"}
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        run_name: str | None = None,
        output_dir: str | os.PathLike = ".",
        best_checkpoint: str | os.PathLike | None = None,
        curve_metrics: list[str] | tuple[str, ...] = (),
        loss_name: str = "train_loss",
        image_key: str = "image",
        pred_key: str = "pred",
        label_key: str = "label",
        picture: str = "membrane",
        picture_grid: tuple[Sequence[int], Sequence[int]] | None = None,
    ) -> None:
        if picture not in ("membrane", "classes", "instances"):
            raise ValueError(f"picture must be 'membrane', 'classes' or 'instances', got {picture!r}")
        self.picture = picture
        self.picture_grid = picture_grid
        self.lookup = _RunLookup(tracking_uri, experiment_name, run_name)
        self.plot_dir = Path(output_dir) / "plots"
        self.best_checkpoint = None if best_checkpoint is None else Path(best_checkpoint)
        self.curve_metrics = tuple(curve_metrics)
        self.loss_name = loss_name
        self.keys = (image_key, pred_key, label_key)
        self._sample: tuple | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._keep_first)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.validation_completed)

    def _reset(self, engine: Engine) -> None:
        self._sample = None

    def _keep_first(self, engine: Engine) -> None:
        if self._sample is not None:
            return
        output = engine.state.output
        item = output[0] if isinstance(output, (list, tuple)) else output
        if isinstance(item, dict) and self.keys[0] in item and self.keys[1] in item:
            self._sample = tuple(item.get(k) for k in self.keys)

    def validation_completed(self, engine: Engine) -> None:
        run_id = self.lookup.run_id()
        epoch = int(engine.state.epoch)
        client = self.lookup.client
        if self._sample is not None:
            from PIL import Image

            path = self.plot_dir / f"val_overlay_epoch{epoch:04d}.png"
            with atomic_path(path) as tmp:
                if self.picture == "classes":
                    pic = class_overlay_picture(*self._sample, grid=self.picture_grid)
                elif self.picture == "instances":
                    pic = instance_overlay_picture(*self._sample)
                else:
                    pic = overlay_picture(*self._sample)
                Image.fromarray(pic).save(tmp, format="PNG")
            if run_id:
                client.log_artifact(run_id, str(path), artifact_path="overlays")
        if run_id:
            curve = self._learning_curve(run_id)
            if curve is not None:
                client.log_artifact(run_id, str(curve), artifact_path="plots")
            best_epoch = getattr(engine.state, "best_metric_epoch", -1)
            if self.best_checkpoint is not None and best_epoch == epoch and self.best_checkpoint.is_file():
                client.log_artifact(run_id, str(self.best_checkpoint), artifact_path="checkpoints")

    def _learning_curve(self, run_id: str) -> Path | None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        client = self.lookup.client
        loss = client.get_metric_history(run_id, self.loss_name)
        names = self.curve_metrics or tuple(
            k for k in client.get_run(run_id).data.metrics if k.startswith("val_")
        )
        metrics = {n: client.get_metric_history(run_id, n) for n in names}
        if not loss and not any(metrics.values()):
            return None
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        if loss:
            steps = np.array([m.step for m in loss])
            values = np.array([m.value for m in loss])
            axes[0].plot(steps, values, lw=0.5, alpha=0.4, label="per iteration")
            k = max(1, len(values) // 50)
            if len(values) >= k > 1:
                smooth = np.convolve(values, np.ones(k) / k, mode="valid")
                axes[0].plot(steps[k - 1 :], smooth, lw=1.5, label=f"mean of {k}")
            axes[0].set(xlabel="iteration", ylabel=self.loss_name, title="training loss")
            axes[0].legend(fontsize=7)
        for name, hist in metrics.items():
            if hist:
                hist = sorted(hist, key=lambda m: m.step)
                axes[1].plot([m.step for m in hist], [m.value for m in hist], marker="o", ms=3, label=name)
        axes[1].set(xlabel="epoch", title="validation")
        if axes[1].get_lines():
            axes[1].legend(fontsize=7)
        fig.tight_layout()
        path = self.plot_dir / "learning_curve.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        return path
