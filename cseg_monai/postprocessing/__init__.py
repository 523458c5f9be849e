"""Post-processing of network outputs: the dense CRF; watershed, region graphs, multicut and agglomeration for instances; tracing through serial sections."""

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
from cseg_monai.postprocessing.instance_params import InstanceParams
from cseg_monai.postprocessing.instance_transforms import BoundaryToInstancesd
from cseg_monai.postprocessing.instances import (
    METHODS,
    check_filter_limits,
    edge_costs,
    edge_slivers,
    filter_instances,
    major_axis_lengths,
    mean_boundary_agglomeration,
    multicut,
    region_adjacency,
    segment_instances,
    watershed_supervoxels,
)
from cseg_monai.postprocessing.section_tracking import LinkParams, section_profiles, stitch_greedy, trace_sections
from cseg_monai.postprocessing.tracing_transforms import SaveTracksd, TraceSectionsd

__all__ = [
    "BoundaryToInstancesd",
    "InstanceParams",
    "METHODS",
    "check_filter_limits",
    "edge_costs",
    "edge_slivers",
    "filter_instances",
    "major_axis_lengths",
    "mean_boundary_agglomeration",
    "multicut",
    "region_adjacency",
    "segment_instances",
    "watershed_supervoxels",
    "BACKENDS",
    "ORGANELLE_CLASSES",
    "CRFParams",
    "DenseCRF",
    "check_crf_inputs",
    "compatibility_matrix",
    "have_pydensecrf",
    "mean_field_energy",
    "organelle_compatibility",
    "LinkParams",
    "SaveTracksd",
    "TraceSectionsd",
    "section_profiles",
    "stitch_greedy",
    "trace_sections",
]
