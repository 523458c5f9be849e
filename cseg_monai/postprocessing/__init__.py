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
from cseg_monai.postprocessing.crf_workflow import (
    CRFEvaluation,
    CRFInference,
    crf_datalist,
    load_probabilities,
    organelle_crf_datalist,
)

__all__ = [
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
