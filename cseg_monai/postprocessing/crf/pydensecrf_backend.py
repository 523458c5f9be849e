"""The ``"pydensecrf"`` backend: the C++ permutohedral-lattice CRF of the optional ``pydensecrf2`` package.

Single-threaded, whole volume at once; the reference the native backend is tested against.
``pydensecrf`` is imported only inside the functions: it is an optional dependency that needs
a C++ build (``bash scripts/setup.sh crf``), and the rest of the CRF works without it.

Example:
    >>> isinstance(have_pydensecrf(), bool)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cseg_monai.postprocessing.crf.params import CRFParams

__all__ = ["have_pydensecrf"]


def have_pydensecrf() -> bool:
    """Whether the optional ``pydensecrf`` module (package ``pydensecrf2``) can be imported.

    Example:
        >>> have_pydensecrf() in (True, False)
        True
    """
    try:
        # local import: pydensecrf is a heavy optional dependency that needs a C++ build
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def _pydensecrf(prob: np.ndarray, image: np.ndarray, spacing: Sequence[float], params: CRFParams, mu: np.ndarray) -> np.ndarray:
    """Marginals of pydensecrf's mean field, float32 ``(L, *spatial)``, the whole volume at once.

    Args:
        prob: ``(L, *spatial)`` class probabilities.
        image: ``(C, *spatial)`` intensities.
        spacing: physical voxel size per spatial axis.
        params: the model.
        mu: the ``L x L`` label compatibility.

    Raises:
        ImportError: pydensecrf is not installed, saying how to build it.
    """
    if not have_pydensecrf():
        raise ImportError(
            "the 'pydensecrf' backend needs the pydensecrf2 package, which builds from source with "
            "Cython < 3: run `bash scripts/setup.sh crf`, or use backend='native'"
        )
    # local imports: pydensecrf is a heavy optional dependency that needs a C++ build
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian  # same reason: optional C++ build

    n_labels, spatial = prob.shape[0], prob.shape[1:]
    n = math.prod(spatial)
    crf = dcrf.DenseCRF(n, n_labels)
    unary = np.ascontiguousarray(-np.log(np.clip(prob.reshape(n_labels, n).astype(np.float32), 1e-8, None)))
    crf.setUnaryEnergy(unary)
    if params.smoothness_weight > 0:
        feats = create_pairwise_gaussian(tuple(params.smoothness_sigma / s for s in spacing), spatial)
        crf.addPairwiseEnergy(
            feats.astype(np.float32),
            compat=np.ascontiguousarray(params.smoothness_weight * mu, dtype=np.float32),
            kernel=dcrf.DIAG_KERNEL,
            normalization=dcrf.NORMALIZE_SYMMETRIC,
        )
    if params.appearance_weight > 0:
        n_ch = image.shape[0]
        sig_i = params.intensity_sigma
        sig_i = tuple(sig_i) if isinstance(sig_i, tuple) else (float(sig_i),) * n_ch
        feats = create_pairwise_bilateral(
            tuple(params.appearance_sigma / s for s in spacing), sig_i, image.astype(np.float32), chdim=0
        )
        crf.addPairwiseEnergy(
            feats.astype(np.float32),
            compat=np.ascontiguousarray(params.appearance_weight * mu, dtype=np.float32),
            kernel=dcrf.DIAG_KERNEL,
            normalization=dcrf.NORMALIZE_SYMMETRIC,
        )
    q = np.asarray(crf.inference(params.iterations), dtype=np.float32)
    return q.reshape(prob.shape)
