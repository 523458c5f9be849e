"""Dense-CRF workflows of the ``em_densecrf_postprocessing`` bundle: inference and before/after evaluation.

Inputs are an image and the class probabilities a segmentation bundle wrote for it
(``STEM_prob.tif``, float32, ``C x [Z x] Y x X``), matched by name: ``STEM_prob.tif`` goes with
the image whose file stem is ``STEM``. The image is scaled as the organelle bundle scales it
(uint8 / 255, other dtypes min-max to [0, 1]), so ``intensity_sigma`` is in those units
(0.04 is about 10 grey levels of an 8-bit image).

Outputs (atomic writes, existing files are only replaced by complete new ones):
``OUT/STEM_labels.tif`` (uint8 refined class ids) and ``OUT/STEM_prob.tif`` (float32 refined
marginals); the evaluation also writes ``crf_metrics.json``, ``crf_class_scores.csv`` and
``crf_before_after.png`` and logs them, with the CRF parameters, to MLflow.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from tqdm.auto import tqdm

from cseg_monai.common.constants import IGNORE_INDEX
from cseg_monai.data.datasets import organelles
from cseg_monai.data.readers import list_images, load_image
from cseg_monai.data.writers import atomic_path, output_stem, write_tiff
from cseg_monai.metrics.classification import classification_scores
from cseg_monai.postprocessing.crf import DenseCRF
from cseg_monai.tracking import new_run
from cseg_monai.visualisation import before_after_picture, save_png
from cseg_monai.workflows.folder_run import FileReport

__all__ = ["CRFEvaluation", "CRFInference", "crf_datalist", "load_probabilities", "organelle_crf_datalist"]

logger = logging.getLogger(__name__)
PROB_SUFFIX = "_prob.tif"


def _prob_files(prob_dir: str | os.PathLike) -> dict[str, Path]:
    folder = Path(prob_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"probability folder {folder} does not exist")
    files = {p.name[: -len(PROB_SUFFIX)]: p for p in sorted(folder.glob(f"*{PROB_SUFFIX}"))}
    if not files:
        raise FileNotFoundError(f"{folder} holds no *{PROB_SUFFIX} file (the probabilities a segmentation bundle writes)")
    return files


def crf_datalist(image_dir: str | os.PathLike, prob_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Pairs ``{"image", "prob"}``: every ``STEM_prob.tif`` in ``prob_dir`` with the image ``STEM.*`` in ``image_dir``.

    Raises:
        FileNotFoundError: a folder is missing or empty, or a probability file has no image
            (all unmatched names are listed).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = write_tiff(d / "img" / "a.tif", np.zeros((4, 4), np.uint8))
        >>> _ = write_tiff(d / "prob" / "a_prob.tif", np.full((2, 4, 4), 0.5, np.float32))
        >>> [sorted(x) for x in crf_datalist(d / "img", d / "prob")]
        [['image', 'prob']]
    """
    probs = _prob_files(prob_dir)
    folder = Path(image_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    images = {output_stem(p): p for p in list_images(folder)}
    missing = sorted(set(probs) - set(images))
    if missing:
        raise FileNotFoundError(f"no image in {folder} for the probability file(s) {[str(probs[s].name) for s in missing]}")
    return [{"image": str(images[s]), "prob": str(probs[s])} for s in sorted(probs)]


def organelle_crf_datalist(
    kind: str, dataset_dir: str | os.PathLike, indices: Sequence[int] | None, prob_dir: str | os.PathLike
) -> list[dict[str, Any]]:
    """Labelled organelle items (:func:`cseg_monai.data.datasets.organelles.datalist`) with their ``prob`` file.

    Raises:
        FileNotFoundError: an item's ``STEM_prob.tif`` is not in ``prob_dir`` (names listed).
    """
    probs = _prob_files(prob_dir)
    items = organelles.datalist(kind, dataset_dir, indices)
    missing = [output_stem(it["image"]) for it in items if output_stem(it["image"]) not in probs]
    if missing:
        raise FileNotFoundError(
            f"{prob_dir} lacks {[m + PROB_SUFFIX for m in missing]}: run the segmentation bundle's evaluation on these items first"
        )
    return [{**it, "prob": str(probs[output_stem(it["image"])])} for it in items]


def load_probabilities(path: str | os.PathLike, spatial_shape: Sequence[int]) -> np.ndarray:
    """Read ``STEM_prob.tif`` as float32 ``(C, *spatial_shape)``; errors name the file.

    Example:
        >>> import tempfile, pathlib
        >>> f = write_tiff(pathlib.Path(tempfile.mkdtemp()) / "x_prob.tif", np.full((3, 2, 5), 1 / 3, np.float32))
        >>> load_probabilities(f, (2, 5)).shape
        (3, 2, 5)
    """
    try:
        prob = tifffile.imread(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: probability file is missing") from None
    except Exception as err:  # corrupt / not a TIFF
        raise ValueError(f"{path}: cannot read the probabilities ({type(err).__name__}: {err})") from None
    spatial = tuple(spatial_shape)
    if prob.ndim != len(spatial) + 1 or tuple(prob.shape[1:]) != spatial:
        raise ValueError(f"{path}: probabilities of shape {prob.shape} do not fit the image ({spatial}): expected (classes, *{spatial})")
    if not np.issubdtype(prob.dtype, np.floating):
        raise ValueError(f"{path}: probabilities must be floating point, got {prob.dtype}")
    return prob.astype(np.float32, copy=False)


def _load_image(item: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """``(scaled image (C, *spatial), label (*spatial) or None)`` of an item."""
    if "kind" in item or "label" in item:
        image, label = organelles.load_item(item)
        return image, label[0]
    image = np.asarray(load_image(item["image"])[0])
    return organelles.scale_image(image, item["image"])[None], None


def _write_refined(output_dir: Path, stem: str, refined: np.ndarray) -> Path:
    """Write ``STEM_prob.tif`` (marginals) and ``STEM_labels.tif`` (uint8 argmax); return the labels path."""
    write_tiff(output_dir / f"{stem}_prob.tif", refined)
    return write_tiff(output_dir / f"{stem}_labels.tif", refined.argmax(0).astype(np.uint8))


class _ItemLoop:
    def __init__(self, crf: DenseCRF, datalist: Sequence[dict[str, Any]], spacing: Sequence[float] | None, progress: bool):
        if not isinstance(crf, DenseCRF):
            raise TypeError(f"crf must be a cseg_monai.postprocessing.DenseCRF, got {type(crf).__name__}")
        if not datalist:
            raise ValueError("the datalist is empty: no image/probability pair to process")
        self.crf, self.datalist, self.spacing, self.progress = crf, list(datalist), spacing, progress

    def _process(self, item: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        image, label = _load_image(item)
        prob = load_probabilities(item["prob"], image.shape[1:])
        refined = self.crf(prob, image, self.spacing, name=str(item["prob"]))
        return image, label, prob, refined

    def _items(self, desc: str):
        for item in tqdm(self.datalist, desc=desc, disable=not self.progress, unit="image"):
            yield (item, *self._process(item))


class CRFInference(_ItemLoop):
    """Refine every ``(image, STEM_prob.tif)`` pair; write ``STEM_labels.tif`` and ``STEM_prob.tif`` to ``output_dir``.

    Args:
        crf: the configured :class:`~cseg_monai.postprocessing.DenseCRF`.
        datalist: items with ``image`` and ``prob`` paths (:func:`crf_datalist`).
        output_dir: where the refined files go (created; must differ from the folder of the
            input probabilities, whose files have the same names).
        spacing: physical voxel size per spatial axis (units of the CRF sigmas); None = 1.
        progress: show a tqdm bar.
    """

    def __init__(self, crf, datalist, output_dir: str | os.PathLike, spacing=None, progress: bool = True) -> None:
        super().__init__(crf, datalist, spacing, progress)
        self.output_dir = Path(output_dir)
        for item in self.datalist:
            if Path(item["prob"]).resolve().parent == self.output_dir.resolve():
                raise ValueError(f"output_dir {self.output_dir} holds the input {item['prob']}: choose another folder")

    def run(self) -> list[Path]:
        """Process every item; return the written label files.

        A pair that fails (a missing or corrupt file, probabilities that do not fit the image) is
        reported and skipped; the others are written, ``output_dir/run_summary.json`` lists both,
        and :class:`~cseg_monai.workflows.folder_run.FolderRunError` is raised at the end if
        anything failed.
        """
        written: list[Path] = []
        report = FileReport(self.output_dir, total=len(self.datalist), progress=self.progress, desc="dense CRF")
        for item in self.datalist:
            with report.item(item["prob"]):
                refined = self._process(item)[3]
                written.append(_write_refined(self.output_dir, output_stem(item["image"]), refined))
        report.finish()
        return written


class CRFEvaluation(_ItemLoop):
    """Scores before and after the CRF on labelled items (pooled over all of them), with pictures and MLflow.

    Writes ``crf_metrics.json`` (``before_*`` / ``after_*``: accuracy, macro F1, macro AP,
    kappa), ``crf_class_scores.csv`` (per-class F1 before/after), ``crf_before_after.png``
    (image | before | after | ground truth, first item) and the refined files of every item.

    Args:
        crf, datalist, spacing, progress: as :class:`CRFInference` (items also need labels).
        output_dir: output folder.
        class_names: one name per class.
        ignore_index: unlabelled label value.
        mlflow: ``{"tracking_uri", "experiment_name", "run_name"}`` to log to (with the CRF
            parameters, backend and spacing), or None.
        write_outputs: also write every item's refined ``STEM_prob.tif`` / ``STEM_labels.tif``.
    """

    def __init__(
        self,
        crf,
        datalist,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        spacing=None,
        ignore_index: int = IGNORE_INDEX,
        mlflow: dict[str, str] | None = None,
        progress: bool = True,
        write_outputs: bool = True,
    ) -> None:
        super().__init__(crf, datalist, spacing, progress)
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.ignore_index = int(ignore_index)
        self.mlflow = mlflow
        self.write_outputs = write_outputs

    def run(self) -> dict[str, float]:
        """Score every item; return the metrics (also written and logged)."""
        n = len(self.class_names)
        pooled: dict[str, list[np.ndarray]] = {"before": [], "after": [], "target": []}
        picture = None
        for item, image, label, prob, refined in self._items("dense CRF evaluation"):
            if label is None:
                raise ValueError(f"{item['image']}: evaluation needs labels")
            if prob.shape[0] != n:
                raise ValueError(f"{item['prob']}: {prob.shape[0]} classes, but {n} class names are configured")
            keep = label != self.ignore_index
            pooled["before"].append(prob[:, keep].T)
            pooled["after"].append(refined[:, keep].T)
            pooled["target"].append(label[keep])
            if picture is None:
                picture = before_after_picture(image, prob, refined, label, self.ignore_index)
            if self.write_outputs:
                _write_refined(self.output_dir, output_stem(item["image"]), refined)
        target = np.concatenate(pooled["target"])
        metrics: dict[str, float] = {}
        per_class = {}
        for when in ("before", "after"):
            scores = classification_scores(np.concatenate(pooled[when]), target, n, ignore_index=self.ignore_index)
            for key in ("accuracy", "macro_f1", "macro_ap", "kappa"):
                metrics[f"{when}_{key}"] = float(scores[key])
            per_class[when] = scores["per_class_f1"]
        self._write(metrics, per_class, picture)
        return metrics

    def _write(self, metrics: dict[str, float], per_class: dict[str, np.ndarray], picture: np.ndarray | None) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        files = []
        with atomic_path(self.output_dir / "crf_metrics.json") as tmp:
            tmp.write_text(json.dumps({"metrics": metrics, "params": self.crf.params.to_dict(), "backend": self.crf.backend}, indent=2) + "\n")
        files.append(self.output_dir / "crf_metrics.json")
        with atomic_path(self.output_dir / "crf_class_scores.csv") as tmp:
            rows = ["class,f1_before,f1_after"] + [
                f"{name},{per_class['before'][i]:.6f},{per_class['after'][i]:.6f}" for i, name in enumerate(self.class_names)
            ]
            tmp.write_text("\n".join(rows) + "\n")
        files.append(self.output_dir / "crf_class_scores.csv")
        if picture is not None:
            files.append(save_png(picture, self.output_dir / "crf_before_after.png"))
        if self.mlflow:
            self._log_mlflow(metrics, per_class, files)

    def _log_mlflow(self, metrics, per_class, files) -> None:
        client, rid = new_run(self.mlflow["tracking_uri"], self.mlflow["experiment_name"], self.mlflow.get("run_name"))
        params = {f"crf/{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in self.crf.params.to_dict().items()}
        params["crf/backend"] = self.crf.backend
        params["crf/spacing"] = json.dumps(list(self.spacing) if self.spacing is not None else None)
        for key, value in params.items():
            client.log_param(rid, key, value[:500])
        for key, value in metrics.items():
            client.log_metric(rid, key, value)
        for i, cname in enumerate(self.class_names):
            for when in ("before", "after"):
                if np.isfinite(per_class[when][i]):
                    client.log_metric(rid, f"{when}_f1_{cname}", float(per_class[when][i]))
        for f in files:
            client.log_artifact(rid, str(f), artifact_path="crf")
        client.set_terminated(rid)
