"""The shared constants agree with the data sets that use them."""

from __future__ import annotations

import numpy as np

from cseg_monai.common.constants import IGNORE_INDEX, ORGANELLE_CLASSES
from cseg_monai.data import phantom
from cseg_monai.data.datasets import epfl_ca1, organelles


def test_one_spelling_and_one_ignore_index():
    assert IGNORE_INDEX == 255 and np.uint8(IGNORE_INDEX) == IGNORE_INDEX  # fits uint8 label maps
    assert len(ORGANELLE_CLASSES) == len(set(ORGANELLE_CLASSES)) == organelles.N_CLASSES == 6
    assert epfl_ca1.ORGANELLE_CLASSES is ORGANELLE_CLASSES and phantom.CLASS_NAMES is ORGANELLE_CLASSES
    assert ORGANELLE_CLASSES[phantom.MITO_MEMBRANE] == "mitochondrion membrane"
