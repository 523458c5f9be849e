"""Named constants that several layers share.

Example:
    >>> from cseg_monai.common.constants import IGNORE_INDEX, ORGANELLE_CLASSES
    >>> IGNORE_INDEX, ORGANELLE_CLASSES.index("synapse")
    (255, 4)
"""

from __future__ import annotations

__all__ = ["IGNORE_INDEX", "ORGANELLE_CLASSES"]

#: Label value of unlabelled voxels in sparse label maps: losses, metrics and samplers skip it.
IGNORE_INDEX: int = 255

#: The six organelle classes in class-id order (EPFL CA1, Drosophila VNC after mapping, phantoms).
ORGANELLE_CLASSES: tuple[str, ...] = (
    "cytoplasm",
    "membrane",
    "mitochondrion",
    "mitochondrion membrane",
    "synapse",
    "vesicle",
)
