"""Classical baselines, no learning: Otsu + distance-transform watershed for nuclei, a seeded
watershed on the membrane signal for dense cells.

What an analyst does in Fiji before reaching for a network, and what a learned model has to
beat: smooth the image, threshold it with Otsu's method, fill holes, take the (anisotropic)
Euclidean distance transform of the mask (per plane in a stack of fewer than 8 planes, whose
faces would otherwise bound every distance), seed one object per distance maximum and flood
``-distance`` inside the mask. The only scale it needs, the minimum distance between two
seeds, comes from the image itself (the object-size estimate of
:func:`~cseg_monai.transforms.object_size.estimate_object_size`: a third of the mean in-plane
chord), so the same call runs on every data set with no tuning.

Dense cells (:func:`membrane_watershed`): the PlantSeg-style distance-transform watershed on
the raw stain. Smooth; the voxels darker than Otsu's threshold (brighter, for EM whose
membranes are dark) are cell interior; one seed per maximum of the interior's distance
transform; flood the smoothed membrane signal from the seeds over the whole volume.

Example:
    >>> from cseg_monai.data.nuclei_phantom import make_nuclei_phantom
    >>> image, truth = make_nuclei_phantom((16, 80, 80), n_nuclei=8, radius_range=(7, 9), seed=2)
    >>> labels = otsu_watershed(image, spacing=(2.0, 1.0, 1.0))
    >>> labels.shape == image.shape, bool(3 <= labels.max() <= 16)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.morphology import remove_small_objects
from skimage.segmentation import relabel_sequential, watershed

from cseg_monai.common.checks import check_spacing
from cseg_monai.transforms.object_size import estimate_object_size, otsu_foreground

__all__ = ["membrane_watershed", "otsu_watershed"]


def _seed_footprint(chord_yx: float, spacing: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """The neighbourhood within which two seeds may not both be maxima: a third of the objects'
    mean in-plane chord each way (at least 2 voxels), scaled per axis by the voxel size; one
    voxel along an axis of length 1."""
    min_distance = max(2, int(round(chord_yx / 3)))
    return np.ones([max(1, int(round(2 * min_distance * spacing[1] / s)) | 1) if n > 1 else 1 for s, n in zip(spacing, shape)], bool)


def otsu_watershed(image: np.ndarray, spacing: Sequence[float] | None = None, name: str = "the image") -> np.ndarray:
    """Instance labels (uint32, 0 = background) of bright objects in ``image`` ``(Z, Y, X)`` or ``(Y, X)``.

    Args:
        image: one channel, any dtype.
        spacing: voxel size (the distance transform and the seed distance respect it); None:
            isotropic voxels.
        name: how errors name the input.

    Raises:
        ValueError: not 2D/3D, non-finite values, a constant image, or a bad spacing.
    """
    x = np.asarray(image)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    size = estimate_object_size(x, name=name)  # validates shape, finiteness, contrast
    sp = [1.0, 1.0, 1.0] if spacing is None else check_spacing(spacing, 3, f"{name}: spacing", max_anisotropy=None)
    if x.shape[0] == 1:
        sp = [1.0, *sp[1:]]
    mask = otsu_foreground(x, z_sigma=0.0 if x.shape[0] < 8 else 1.0 * sp[1] / sp[0])
    mask = np.stack([ndimage.binary_fill_holes(m) for m in mask])
    thin = 1 < x.shape[0] < 8  # a thin stack: its faces, not the objects, would bound a 3D distance
    dist = np.stack([ndimage.distance_transform_edt(m, sampling=sp[1:]) for m in mask]) if thin else ndimage.distance_transform_edt(mask, sampling=sp)
    dist = ndimage.gaussian_filter(dist, [0.0 if x.shape[0] < 8 else 1.0 * sp[1] / sp[0], 1.0, 1.0])
    footprint = _seed_footprint(size.chord_yx, sp, x.shape)
    if thin:
        footprint = np.ones((2 * x.shape[0] - 1, *footprint.shape[1:]), bool)  # one seed per column of planes
    peaks = peak_local_max(dist, footprint=footprint, labels=mask.astype(np.int32), exclude_border=False)
    markers = np.zeros(x.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=mask)
    min_voxels = max(4, int((size.chord_yx / 4) ** 2 * (1 if x.shape[0] == 1 else max(1.0, size.chord_yx / 4 * sp[1] / sp[0]))))
    labels = remove_small_objects(labels, max_size=min_voxels - 1)
    labels = relabel_sequential(labels)[0].astype(np.uint32)
    return labels[0] if squeeze else labels


def membrane_watershed(
    image: np.ndarray,
    spacing: Sequence[float] | None = None,
    bright_membranes: bool = True,
    name: str = "the image",
) -> np.ndarray:
    """Dense cell labels (uint32, every voxel in a cell) of a membrane-stained ``(Z, Y, X)`` volume.

    Args:
        image: one channel, any dtype.
        spacing: voxel size; None: isotropic voxels.
        bright_membranes: ``True`` for a membrane stain (confocal), ``False`` for EM, whose
            membranes are dark.
        name: how errors name the input.

    Raises:
        ValueError: not 3D, non-finite values, a constant image, or a bad spacing.

    Example:
        >>> import numpy as np
        >>> from skimage.segmentation import find_boundaries
        >>> cells = np.repeat(np.arange(4).reshape(2, 2), 16, 0).repeat(16, 1)
        >>> walls = np.stack([find_boundaries(cells).astype(np.float32)] * 6)
        >>> int(membrane_watershed(walls).max())
        4
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"{name}: expected a volume (Z, Y, X), got shape {x.shape}")
    sp = [1.0, 1.0, 1.0] if spacing is None else check_spacing(spacing, 3, f"{name}: spacing", max_anisotropy=None)
    membrane = x if bright_membranes else -x
    size = estimate_object_size(-membrane, name=name)  # interiors bright: their chord, validates the input
    z_sigma = 1.0 * sp[1] / sp[0] if x.shape[0] >= 8 else 0.0
    smooth = ndimage.gaussian_filter(membrane, [z_sigma, 1.0, 1.0])
    interior = otsu_foreground(-smooth, z_sigma=0.0)
    dist = ndimage.distance_transform_edt(interior, sampling=sp)
    peaks = peak_local_max(dist, footprint=_seed_footprint(size.chord_yx, sp, x.shape), labels=interior.astype(np.int32), exclude_border=False)
    seeds = np.zeros(x.shape, bool)
    seeds[tuple(peaks.T)] = True
    markers = ndimage.label(seeds, structure=np.ones((3, 3, 3), bool))[0]  # a plateau's maxima: one seed
    labels = watershed(smooth, markers)
    return relabel_sequential(labels)[0].astype(np.uint32)
