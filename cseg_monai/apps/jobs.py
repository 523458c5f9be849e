"""One GUI job: check the uploads, run a bundle's inference on each, collect the outputs.

A job gets its own folder ``OUTPUT_ROOT/job-YYYYmmdd-HHMMSS-XXXXXX`` with ``inputs/`` (the
checked volumes, as TIFF) and ``outputs/`` (what the bundle writes: ``STEM_prob.tif`` and
``STEM_labels.tif``). Each volume runs on its own, so a volume that fails is reported and the
others still run; nothing in a job raises past :func:`run_job` except a bad parameter.

Example:
    >>> from cseg_monai.apps.models import find_models
    >>> params = JobParams(patch_size=(32, 64, 64), overlap=0.5)
    >>> params.check(find_models()[0]) is None
    True
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from cseg_monai.apps.models import GuiModel
from cseg_monai.apps.volumes import UploadLimits, VolumeCheckError, check_volume, write_job_input
from cseg_monai.common.errors import exception_chain
from cseg_monai.postprocessing import InstanceParams
from cseg_monai.workflows import FolderRunError, run_bundle
from cseg_monai.workflows.folder_run import SCALE_KEYS, SUMMARY_NAME

__all__ = ["BLEND_MODES", "JobParams", "VolumeResult", "JobResult", "run_job", "new_job_dir"]

BLEND_MODES = ("gaussian", "constant")
logger = logging.getLogger(__name__)


@dataclass
class JobParams:
    """The parameters a GUI user sets; ``None`` keeps the model's own value.

    Attributes:
        patch_size: sliding-window patch ``(z, y, x)``; each a multiple of the network's
            downsampling on that axis.
        overlap: sliding-window overlap in ``[0, 1)``.
        blend_mode: ``gaussian`` or ``constant``.
        boundary_threshold: boundary probability above which voxels separate instances.
        min_size: smallest object kept, voxels.
        max_size: largest object kept, voxels (``0``: no limit; ``None``: the model's own value).
        instance_method: ``multicut``, ``agglomeration`` or ``watershed``.
        mask_watershed: flood the watershed only inside the predicted foreground (sparse objects
            such as nuclei; off for dense cells).
        dataset: the array to read from HDF5 uploads.
        channel: for uploads with more channels than the model takes, the channel to segment.
        object_diameter: the objects' typical diameter in the upload's pixels, for a model that
            measures objects (``None``: measured in the image).
    """

    patch_size: Sequence[int] | None = None
    overlap: float | None = None
    blend_mode: str | None = None
    boundary_threshold: float | None = None
    min_size: int | None = None
    max_size: int | None = None
    instance_method: str | None = None
    mask_watershed: bool | None = None
    dataset: str | None = None
    channel: int | None = None
    object_diameter: float | None = None

    def instance_changes(self) -> dict:
        """The post-processing fields this form sets, by their :class:`InstanceParams` names."""
        values = {
            "threshold": self.boundary_threshold,
            "method": self.instance_method,
            "min_size": self.min_size,
            "mask_watershed": self.mask_watershed,
        }
        out = {k: v for k, v in values.items() if v is not None}
        if self.max_size is not None:
            out["max_size"] = None if self.max_size == 0 else self.max_size  # the GUI's 0: no upper limit
        return out

    def instance_params(self, model: GuiModel) -> InstanceParams | None:
        """``model``'s post-processing settings with this form's changes, validated by :class:`InstanceParams`.

        Raises:
            ValueError: naming the setting as the GUI labels it.
        """
        if model.instance_params is None:
            return None
        try:
            return model.instance_params.replace(**self.instance_changes())
        except ValueError as err:
            # name the setting as the GUI labels it; only the field names, never the user's value
            message = re.sub(r"^InstanceParams[.:] ?", "", str(err))
            message = re.sub(r"^(\w+)", lambda m: _GUI_LABELS.get(m.group(1), m.group(1)), message)
            message = re.sub(r"(\w+)(?= \()", lambda m: _GUI_LABELS.get(m.group(1), m.group(1)), message)
            raise ValueError(message.replace("or None for no limit", "or 0 for no limit")) from None

    def check(self, model: GuiModel) -> None:
        """Raise ``ValueError`` naming the first parameter that ``model`` cannot run with."""
        if self.patch_size is not None:
            patch = tuple(int(p) for p in self.patch_size)
            if len(patch) != 3 or min(patch) < 1:
                raise ValueError(f"patch size must be 3 positive sizes (z, y, x), got {tuple(self.patch_size)}")
            bad = [f"{p} (axis {a}: a multiple of {d})" for a, (p, d) in enumerate(zip(patch, model.downsampling)) if p % d]
            if bad:
                raise ValueError(f"patch size {patch} does not fit the network of {model.name}: " + ", ".join(bad))
        if self.overlap is not None and not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.blend_mode is not None and self.blend_mode not in BLEND_MODES:
            raise ValueError(f"blending must be one of {BLEND_MODES}, got {self.blend_mode!r}")
        if self.object_diameter is not None:
            if not (np.isfinite(float(self.object_diameter)) and float(self.object_diameter) > 0):
                raise ValueError(f"object diameter must be a number of pixels > 0 (0 in the form: measure it), got {self.object_diameter}")
            if model.defaults.get("object_size") is None:
                raise ValueError(f"{model.name} does not rescale by object size; leave the object diameter at 0 (it uses the voxel size)")
        self.instance_params(model)

    def overrides(self, model: GuiModel) -> dict:
        """Config overrides for ``model``: only keys its configuration defines."""
        values = {
            "patch_size": None if self.patch_size is None else [int(p) for p in self.patch_size],
            "overlap": self.overlap,
            "blend_mode": self.blend_mode,
            "object_diameter": None if self.object_diameter is None else float(self.object_diameter),
        }
        out = {k: v for k, v in values.items() if v is not None and k in model.defaults}
        if model.instance_params is not None:
            self.instance_params(model)  # refuse a bad setting before anything runs
            out.update({f"instance_params#{k}": v for k, v in self.instance_changes().items()})
        return out


# InstanceParams field -> the GUI's label of it, for error messages
_GUI_LABELS = {
    "threshold": "boundary threshold",
    "method": "instance method",
    "min_size": "min object size",
    "max_size": "max object size",
    "mask_watershed": "masked watershed",
}


@dataclass
class VolumeResult:
    """What one uploaded volume gave.

    Attributes:
        name: the uploaded file's name.
        stem: the output stem.
        input_path: the checked copy the bundle read (``None`` when the check failed).
        labels_path: ``STEM_labels.tif`` (``None`` on failure).
        prob_path: ``STEM_prob.tif`` (``None`` on failure).
        n_instances: instances found.
        seconds: run time.
        error: the problem, for a volume that failed.
        scale: how the input was rescaled for the model (``spacing_source``: where the voxel
            size came from, ``object_zoom`` when the objects were measured), from the run's
            ``run_summary.json``.
    """

    name: str
    stem: str = ""
    input_path: Path | None = None
    labels_path: Path | None = None
    prob_path: Path | None = None
    n_instances: int = 0
    seconds: float = 0.0
    error: str | None = None
    scale: dict = field(default_factory=dict)

    def scale_text(self) -> str:
        """``"voxel size from the file [..] um; objects measured, zoom 0.48"`` (empty when unknown)."""
        if not self.scale:
            return ""
        source = self.scale.get("spacing_source", "unknown")
        spacing = self.scale.get("input_spacing")
        parts = [f"voxel size {'unknown' if source == 'unknown' else 'from ' + ('you' if source == 'user' else 'the ' + source)}"
                 + (f" {spacing}" if spacing else "")]  # fmt: skip
        if self.scale.get("object_size_source") == "estimated":
            parts.append(f"objects measured in the image ({self.scale.get('object_chord', 0):.1f} px), zoom {self.scale.get('object_zoom', 1):.2f}")
        elif self.scale.get("object_size_source") == "user":
            parts.append(f"object diameter from you, zoom {self.scale.get('object_zoom', 1):.2f}")
        return "; ".join(parts)


@dataclass
class JobResult:
    """A job's folder and its volumes' results."""

    job_dir: Path
    model: str
    volumes: list[VolumeResult] = field(default_factory=list)

    @property
    def succeeded(self) -> list[VolumeResult]:
        """The volumes that ran."""
        return [v for v in self.volumes if v.error is None]

    @property
    def files(self) -> list[str]:
        """Label and probability files of the volumes that ran, for download."""
        return [str(p) for v in self.succeeded for p in (v.labels_path, v.prob_path) if p is not None]

    def summary(self) -> str:
        """A Markdown summary: one line per volume."""
        lines = [f"**{len(self.succeeded)} of {len(self.volumes)} volume(s) done** with `{self.model}` in `{self.job_dir}`", ""]
        for v in self.volumes:
            if v.error is None:
                scale = v.scale_text()
                lines.append(f"- `{v.name}`: {v.n_instances} instances, {v.seconds:.1f} s" + (f" ({scale})" if scale else ""))
            else:
                lines.append(f"- `{v.name}`: **failed**: {v.error}")
        return "\n".join(lines)


def new_job_dir(output_root: str | Path) -> Path:
    """A new, empty job folder under ``output_root``."""
    root = Path(output_root)
    job = root / f"job-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    (job / "inputs").mkdir(parents=True)
    (job / "outputs").mkdir()
    return job


def _unique_stem(stem: str, taken: set[str]) -> str:
    out, k = stem, 2
    while out in taken:
        out, k = f"{stem}_{k}", k + 1
    taken.add(out)
    return out


def _run_bundle(model: GuiModel, image: Path, out_dir: Path, overrides: dict, progress_bar: bool) -> None:
    configs = [str(p) for p in model.config_paths]
    run_bundle(model.bundle_dir, configs, "infer", datalist=[{"image": str(image)}], output_dir=str(out_dir),
               progress_bar=progress_bar, **{**model.overrides, **overrides})  # fmt: skip


def run_job(
    files: Sequence[str | Path],
    model: GuiModel,
    params: JobParams,
    output_root: str | Path,
    limits: UploadLimits | None = None,
    names: Sequence[str] | None = None,
    progress: Callable[[float, str], None] | None = None,
    tqdm_bars: bool = False,
) -> JobResult:
    """Segment each of ``files`` with ``model``; a volume that fails does not stop the others.

    Args:
        files: uploaded volumes.
        model: the model to run.
        params: the user's parameters (checked first).
        output_root: folder that receives the job folder.
        limits: upload limits.
        names: the files' names as uploaded (default their own names).
        progress: called with ``(fraction done, what is happening)``, between the steps of each volume.
        tqdm_bars: let the bundle show its tqdm bars, the sliding window's among them, which
            move within one volume (the GUI follows them with ``gradio.Progress(track_tqdm=True)``).

    Returns:
        The :class:`JobResult`.

    Raises:
        ValueError: a parameter ``model`` cannot run with (nothing is run then).
    """
    params.check(model)
    if not files:
        raise ValueError("no volume uploaded")
    progress = progress or (lambda fraction, text: None)
    names = list(names) if names is not None else [Path(f).name for f in files]
    job = new_job_dir(output_root)
    result = JobResult(job_dir=job, model=model.name)
    taken: set[str] = set()
    n = len(files)
    for i, (path, name) in enumerate(zip(files, names)):
        began = time.perf_counter()
        item = VolumeResult(name=name)
        result.volumes.append(item)
        try:
            progress(i / n, f"{name}: checking ({i + 1}/{n})")
            volume = check_volume(path, model.in_channels, dataset=params.dataset, limits=limits, name=name, channel=params.channel,
                                  allow_2d=model.single_plane_2d)  # fmt: skip
            item.stem = volume.stem = _unique_stem(volume.stem, taken)
            item.input_path = write_job_input(volume, job / "inputs")
            overrides = params.overrides(model)
            if volume.spacing is not None and "spacing" in model.defaults:
                overrides["spacing"] = list(volume.spacing)
            progress((i + 0.1) / n, f"{name}: segmenting ({i + 1}/{n})")
            _run_bundle(model, item.input_path, job / "outputs", overrides, tqdm_bars)
            labels = job / "outputs" / f"{item.stem}_labels.tif"
            prob = job / "outputs" / f"{item.stem}_prob.tif"
            if not labels.is_file():
                raise RuntimeError(f"the bundle wrote no {labels.name}")

            item.labels_path, item.prob_path = labels, prob if prob.is_file() else None
            item.scale = _scale_of(job / "outputs" / SUMMARY_NAME)
            ids = np.unique(tifffile.imread(labels))
            item.n_instances = int((ids > 0).sum())
        except VolumeCheckError as err:
            item.error = str(err)
        except Exception as err:  # noqa: BLE001 - a failing volume must not end the job or the app
            logger.error("GUI job %s: %s failed:\n%s", job.name, name, traceback.format_exc())
            item.error = f"{name}: {type(err).__name__}: {_innermost(err)}"
        item.seconds = time.perf_counter() - began
    progress(1.0, "done")
    return result


def _scale_of(summary: Path) -> dict:
    """The rescaling record of the one file a GUI run wrote (``{}`` when the summary has none)."""
    try:
        done = json.loads(summary.read_text()).get("succeeded", [])
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in (done[-1] if done else {}).items() if k in SCALE_KEYS}


def _innermost(err: BaseException) -> str:
    """The message of the innermost cause (MONAI wraps transform errors in RuntimeError), or the
    reason a folder run recorded for the volume (:class:`~cseg_monai.workflows.FolderRunError`)."""
    for e in exception_chain(err):
        if isinstance(e, FolderRunError) and e.failed:
            return e.failed[0]["error"].splitlines()[0]
    inner = exception_chain(err)[-1]
    return str(inner).splitlines()[0] if str(inner) else type(inner).__name__
