"""Shared helpers at the bottom of the package's layers: constants, checks, block tiling, an array cache, errors, paths.

Everything here depends only on the Python standard library and numpy, so every other
sub-package may import it.
"""

from cseg_monai.common.caching import ArrayCache, array_digest
from cseg_monai.common.checks import check_instance_ids
from cseg_monai.common.constants import IGNORE_INDEX, ORGANELLE_CLASSES
from cseg_monai.common.errors import innermost_exception
from cseg_monai.common.paths import DATA_DIR_ENV, data_root
from cseg_monai.common.tiling import Block, fit_block_shape, iter_blocks, reflect_indices

__all__ = [
    "DATA_DIR_ENV",
    "IGNORE_INDEX",
    "ORGANELLE_CLASSES",
    "ArrayCache",
    "Block",
    "array_digest",
    "check_instance_ids",
    "data_root",
    "fit_block_shape",
    "innermost_exception",
    "iter_blocks",
    "reflect_indices",
]
