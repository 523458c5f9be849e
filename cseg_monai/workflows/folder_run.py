"""Inference over a folder where one bad file never costs the others.

:func:`run_each_file` runs a bundle's configured evaluator (``SupervisedEvaluator`` over
``@dataset``) once per item of its dataset instead of once over the whole folder. A file that
fails (corrupt, wrong shape, NaN, a reader or post-processing error) is logged with its path
and the innermost reason and skipped; the other files are processed and written. At the end
``OUTPUT_DIR/run_summary.json`` lists what was written and what failed (written to a temporary
name and renamed), and, when something failed, :class:`FolderRunError` is raised naming every
failed file, so the run's exit status says so. :class:`FileReport` is the same bookkeeping
for loops of our own (the CRF bundle).

Inference configs call it from their ``run`` list::

    "run": ["$cseg_monai.workflows.run_each_file(@evaluator, @output_dir)"]

Example:
    >>> import tempfile
    >>> report = FileReport(tempfile.mkdtemp(), progress=False)
    >>> with report.item("good.tif"):
    ...     pass
    >>> with report.item("bad.tif"):
    ...     raise ValueError("bad.tif: not a TIFF")
    >>> report.finish()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cseg_monai.workflows.folder_run.FolderRunError: 1 of 2 file(s) failed (the others were written; see .../run_summary.json): bad.tif: not a TIFF
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monai.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cseg_monai.common.errors import exception_chain, innermost_exception
from cseg_monai.data.writers import atomic_path

__all__ = ["FileReport", "FolderRunError", "SCALE_KEYS", "SUMMARY_NAME", "run_each_file"]

#: The summary a folder run writes into its output folder.
SUMMARY_NAME = "run_summary.json"

logger = logging.getLogger(__name__)


class FolderRunError(RuntimeError):
    """Some files of a folder run failed; the others were written. ``failed``: ``[{"file", "error"}]``."""

    def __init__(self, message: str, failed: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.failed = failed


def _reason(err: BaseException, name: str) -> str:
    """The clearest message of ``err``'s chain: the innermost that names the file, else the innermost."""
    base = os.path.basename(name)
    naming = [e for e in exception_chain(err) if base and base in str(e)]
    inner = naming[-1] if naming else innermost_exception(err)
    text = str(inner) or type(inner).__name__
    return text if isinstance(inner, (ValueError, OSError, KeyError)) and naming else f"{type(inner).__name__}: {text}"


class FileReport:
    """Per-file bookkeeping of a folder run: which files were written, which failed and why.

    Args:
        output_dir: the run's output folder; the summary goes to ``output_dir/run_summary.json``.
        total: number of files, for the progress bar.
        progress: show a tqdm bar (one step per file).
        desc: the bar's label.
    """

    def __init__(self, output_dir: str | os.PathLike, total: int | None = None, progress: bool = True, desc: str = "files") -> None:
        self.output_dir = Path(output_dir)
        self.succeeded: list[dict[str, Any]] = []
        self.failed: list[dict[str, str]] = []
        self._bar = tqdm(total=total, desc=desc, unit="file", disable=not progress)

    @contextlib.contextmanager
    def item(self, name: str | os.PathLike) -> Iterator[dict[str, Any]]:
        """Run the block for one file; an exception in it is recorded (not raised) and the run goes on.

        The block may fill the dict it is given; its entries join the file's record.
        """
        start = time.perf_counter()
        extra: dict[str, Any] = {}
        try:
            yield extra
        except Exception as err:  # noqa: BLE001 - one bad file never costs the others
            reason = _reason(err, str(name))
            logger.error("%s failed, skipped: %s", name, reason)
            self.failed.append({"file": str(name), "error": reason})
        else:
            self.succeeded.append({"file": str(name), "seconds": round(time.perf_counter() - start, 3), **extra})
        finally:
            self._bar.update(1)
            self._bar.set_postfix_str(f"{len(self.failed)} failed" if self.failed else "")

    def summary(self) -> dict[str, Any]:
        """``{"n_files", "n_failed", "succeeded": [...], "failed": [{"file", "error"}]}``."""
        n = len(self.succeeded) + len(self.failed)
        return {"n_files": n, "n_failed": len(self.failed), "succeeded": self.succeeded, "failed": self.failed}

    def write_summary(self) -> Path:
        """Write :meth:`summary` to ``output_dir/run_summary.json`` (temporary file, then rename)."""
        path = self.output_dir / SUMMARY_NAME
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.summary(), indent=2) + "\n")
        return path

    def finish(self) -> dict[str, Any]:
        """Close the bar, write the summary; raise :class:`FolderRunError` if any file failed.

        Returns:
            The summary, when every file succeeded.
        """
        self._bar.close()
        path = self.write_summary()
        summary = self.summary()
        if self.failed:
            lines = "; ".join(f["error"] if f["file"] in f["error"] else f"{f['file']}: {f['error']}" for f in self.failed)
            raise FolderRunError(
                f"{len(self.failed)} of {summary['n_files']} file(s) failed (the others were written; see {path}): {lines}", self.failed
            )
        logger.info("%d file(s) written; summary in %s", summary["n_files"], path)
        return summary


#: Meta-data entries of the rescaling (cseg_monai.transforms.RescaleToSpacingd) a file's record keeps.
SCALE_KEYS = ("spacing_source", "input_spacing", "object_size_source", "object_chord", "object_zoom")


def _scale_record(output: Any) -> dict[str, Any]:
    """How the first output of a run was rescaled (voxel-size source, object zoom), JSON-ready."""
    first = output[0] if isinstance(output, list) and output else output
    if not isinstance(first, dict):
        return {}
    for value in first.values():
        meta = getattr(value, "meta", None)
        if meta and "spacing_source" in meta:
            out = {}
            for key in SCALE_KEYS:
                if meta.get(key) is not None:
                    v = meta[key]
                    v = v.tolist() if hasattr(v, "tolist") else v
                    out[key] = [round(float(x), 4) for x in v] if isinstance(v, list) else (round(float(v), 4) if isinstance(v, float) else v)
            return out
    return {}


def _item_name(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for key in ("image", "img", "prob"):
            if key in item:
                return str(item[key])
    return f"item {index}"


def run_each_file(evaluator: Any, output_dir: str | os.PathLike, progress: bool | None = None) -> dict[str, Any]:
    """Run ``evaluator`` once per item of its data loader's dataset; skip and report the files that fail.

    Args:
        evaluator: a MONAI ``SupervisedEvaluator`` (or any MONAI workflow) whose ``data_loader``
            iterates a ``monai.data.Dataset`` (``.data``: the items, ``.transform``: the
            preprocessing); each item gets a loader of its own with the same settings.
        output_dir: where the run writes; receives ``run_summary.json``.
        progress: a bar over the files; default: when stderr is a terminal.

    Returns:
        The summary (:meth:`FileReport.summary`), when every file was written.

    Raises:
        FolderRunError: after all files were tried, naming each one that failed.
        ValueError: the evaluator has no dataset of items, or the dataset is empty.
    """
    loader = getattr(evaluator, "data_loader", None)
    dataset = getattr(loader, "dataset", None)
    items = getattr(dataset, "data", None)
    if items is None:
        raise ValueError("run_each_file needs an evaluator whose data_loader iterates a monai.data.Dataset")
    items = list(items)
    if not items:
        raise ValueError("no input files: the dataset is empty (check dataset_dir)")
    if progress is None:
        progress = sys.stderr.isatty()
    report = FileReport(output_dir, total=len(items), progress=progress, desc="inference")
    num_workers = getattr(loader, "num_workers", 0)
    for index, item in enumerate(items):
        name = _item_name(item, index)
        with report.item(name) as record:
            one = DataLoader(Dataset([item], transform=dataset.transform), batch_size=1, shuffle=False, num_workers=num_workers)
            evaluator.data_loader = one
            evaluator.state.epoch_length = len(one)  # MONAI's evaluator keeps the length it was built with
            # Ignite keeps the generator of a run that raised, and the next run would resume it
            # (a dead generator: nothing runs); a run after a failed file must start afresh
            evaluator._internal_run_generator = None
            evaluator.run()
            if evaluator.state.iteration != len(one):
                raise RuntimeError(f"{name}: the evaluator ran {evaluator.state.iteration} iterations for one file")
            record.update(_scale_record(evaluator.state.output))
    evaluator.data_loader = loader
    return report.finish()
