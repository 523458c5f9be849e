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

__all__ = [
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
