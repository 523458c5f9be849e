"""Applications on top of the bundles: the web GUI for 3D instance segmentation (``cseg gui``).

:mod:`cseg_monai.apps.models` finds the runnable models, :mod:`cseg_monai.apps.volumes` checks
uploads, :mod:`cseg_monai.apps.jobs` runs them and :mod:`cseg_monai.apps.instance_gui` is the
Gradio app (gradio is imported only there: ``bash scripts/setup.sh gui``).

Example:
    >>> from cseg_monai.apps import find_models
    >>> isinstance(find_models(), list)
    True
"""

from cseg_monai.apps.jobs import JobParams, JobResult, VolumeResult, run_job
from cseg_monai.apps.models import GuiModel, find_models
from cseg_monai.apps.volumes import UploadLimits, Volume, VolumeCheckError, check_volume

__all__ = [
    "GuiModel",
    "JobParams",
    "JobResult",
    "UploadLimits",
    "Volume",
    "VolumeCheckError",
    "VolumeResult",
    "check_volume",
    "find_models",
    "run_job",
]
