"""Bundle support and workflows: what bundle configs call, and how a bundle run is launched.

- :mod:`~cseg_monai.workflows.bundle_support`: the bundle root, the default device, run
  names, the unknown-config-key check, a clean distributed shutdown;
- :mod:`~cseg_monai.workflows.launch`: one way to launch a bundle workflow (in-process or as a
  ``python -m monai.bundle run`` command line);
- :mod:`~cseg_monai.workflows.folder_run`: inference over a folder where a failing file is
  reported and skipped (``run_each_file``, ``run_summary.json``, ``FolderRunError``);
- :mod:`~cseg_monai.workflows.pretext`: the pretraining bundle's inference, the pretext's
  error per file against a no-network baseline (``pretext_report``);
- :mod:`~cseg_monai.workflows.crf`: the dense-CRF bundle's inference and evaluation loops;
- :mod:`~cseg_monai.workflows.bundle_export`: share a bundle as one self-contained zip
  (``export_bundle``, ``import_bundle``);
- :mod:`~cseg_monai.workflows.large_volume`: out-of-core inference on Dask into OME-Zarr
  (``LargeVolumeInference``; imported on first use, as it loads ``dask.distributed``);
- :mod:`~cseg_monai.workflows.shared_config`: the training config every trained bundle shares
  (``configs/train_common.json``) and the check that keeps each bundle's copy in step.
"""

import importlib

from cseg_monai.workflows.bundle_export import export_bundle, import_bundle
from cseg_monai.workflows.bundle_support import (
    bundle_root,
    bundles_dir,
    check_config_keys,
    default_device,
    known_config_keys,
    list_bundles,
    run_name,
    shutdown_distributed,
)
from cseg_monai.workflows.crf import CRFEvaluation, CRFInference, crf_datalist, load_probabilities, organelle_crf_datalist
from cseg_monai.workflows.folder_run import FileReport, FolderRunError, run_each_file
from cseg_monai.workflows.launch import bundle_command, bundle_workflow, config_files, resolve_bundle, run_bundle
from cseg_monai.workflows.pretext import baseline_prediction, pretext_report
from cseg_monai.workflows.shared_config import load_shared_config, shared_config_drift, sync_shared_config

__all__ = [
    "baseline_prediction",
    "pretext_report",
    "CRFEvaluation",
    "CRFInference",
    "bundle_command",
    "bundle_root",
    "bundle_workflow",
    "bundles_dir",
    "check_config_keys",
    "config_files",
    "crf_datalist",
    "default_device",
    "known_config_keys",
    "list_bundles",
    "load_probabilities",
    "organelle_crf_datalist",
    "resolve_bundle",
    "run_bundle",
    "run_name",
    "shutdown_distributed",
    "export_bundle",
    "import_bundle",
    "FileReport",
    "FolderRunError",
    "run_each_file",
    "load_shared_config",
    "shared_config_drift",
    "sync_shared_config",
]


def __getattr__(name: str):
    """``LargeVolumeInference`` and friends on first use (``dask.distributed`` is slow to import)."""
    if name in ("LargeVolumeInference", "IntensityNorm", "large_inputs", "load_weights", "large_volume"):
        module = importlib.import_module(f"{__name__}.large_volume")
        return module if name == "large_volume" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
