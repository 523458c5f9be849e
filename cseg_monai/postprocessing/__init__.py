"""Post-processing of network outputs: dense CRF (and, later, watershed, agglomeration, morphology)."""

from cseg_monai.postprocessing.crf import (
    BACKENDS,
    ORGANELLE_CLASSES,
    CRFParams,
    DenseCRF,
    check_crf_inputs,
    compatibility_matrix,
    have_pydensecrf,
    mean_field_energy,
    organelle_compatibility,
)
from cseg_monai.postprocessing.instances import (
    METHODS,
    check_filter_limits,
    edge_costs,
    filter_instances,
    major_axis_lengths,
    mean_boundary_agglomeration,
    multicut,
    region_adjacency,
    segment_instances,
    watershed_supervoxels,
)

# the workflows pull in MONAI and the data readers: imported on first use, so that the CRF
# alone stays light (``from cseg_monai.postprocessing import DenseCRF``)
_WORKFLOW_NAMES = ("CRFEvaluation", "CRFInference", "crf_datalist", "load_probabilities", "organelle_crf_datalist")


def __getattr__(name: str):
    if name in _WORKFLOW_NAMES:
        from cseg_monai.postprocessing import crf_workflow

        return getattr(crf_workflow, name)
    raise AttributeError(f"module 'cseg_monai.postprocessing' has no attribute {name!r}")


__all__ = [
    "METHODS",
    "check_filter_limits",
    "edge_costs",
    "filter_instances",
    "major_axis_lengths",
    "mean_boundary_agglomeration",
    "multicut",
    "region_adjacency",
    "segment_instances",
    "watershed_supervoxels",
    "CRFEvaluation",
    "CRFInference",
    "crf_datalist",
    "load_probabilities",
    "organelle_crf_datalist",
    "BACKENDS",
    "ORGANELLE_CLASSES",
    "CRFParams",
    "DenseCRF",
    "check_crf_inputs",
    "compatibility_matrix",
    "have_pydensecrf",
    "mean_field_energy",
    "organelle_compatibility",
]
