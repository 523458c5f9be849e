"""How big the objects of an image are, from the image alone (no model, no labels).

A generalist nuclei model meets plant nuclei of 3 um and hamster nuclei of 12 um, imaged at
any voxel size: knowing the voxel size is not enough to put them at the scale the model was
trained at. Like Cellpose's diameter estimate, :func:`estimate_object_size` measures the
objects themselves, so inference can zoom the input until its objects are as large, in voxels,
as the model's training objects were (see :class:`~cseg_monai.transforms.RescaleToSpacingd`,
``object_size``).

The measure is the **mean chord length** of the foreground along Y and X: the image is scaled
between its 1st and 99.8th percentiles, smoothed (sigma 1 voxel), thresholded with Otsu's
method and opened in-plane; then, along an axis, chord = foreground voxels / foreground runs.
For a ball of diameter d the mean chord is 2d/3; touching objects that merge in the mask read
a little larger, dim objects a little smaller. What matters is that training and inference use
the same estimate (the model's ``object_size`` is this estimate on its training images), so
its bias cancels.

Example:
    >>> import numpy as np
    >>> from cseg_monai.data.nuclei_phantom import make_nuclei_phantom
    >>> image, _ = make_nuclei_phantom((16, 96, 96), n_nuclei=10, radius_range=(8, 10), seed=1)
    >>> size = estimate_object_size(image)
    >>> 6 < size.chord_yx < 16, size.foreground_fraction > 0
    (True, True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

__all__ = ["ObjectSize", "estimate_object_size", "mean_chord", "otsu_foreground"]

#: Largest number of voxels the estimate looks at (bigger volumes are strided first).
MAX_VOXELS = 8_000_000


@dataclass(frozen=True)
class ObjectSize:
    """The estimate: mean foreground chord in voxels in-plane (``chord_yx``) and along z.

    ``chord_z`` is truncated by thin stacks (a 5-plane stack reads at most 5) and is reported,
    not used to rescale. ``stride`` is the in-plane subsampling the estimate ran at (its chords
    are already multiplied back).
    """

    chord_yx: float
    chord_z: float
    foreground_fraction: float
    stride: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, for meta data and JSON."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def mean_chord(mask: np.ndarray, axis: int) -> float:
    """Mean length of the runs of ``True`` along ``axis`` (0.0 when ``mask`` is empty).

    Example:
        >>> mean_chord(np.array([[1, 1, 0, 1, 1, 1, 1]], bool), axis=1)
        3.0
    """
    m = np.moveaxis(np.asarray(mask, bool), axis, -1)
    count = int(m.sum())
    if count == 0:
        return 0.0
    starts = int(m[..., 0].sum()) + int((m[..., 1:] & ~m[..., :-1]).sum())
    return count / max(starts, 1)


def otsu_foreground(image: np.ndarray, z_sigma: float = 1.0) -> np.ndarray:
    """Bright objects of a ``(Z, Y, X)`` image: scaled between its 1st and 99.8th percentiles,
    smoothed (sigma ``z_sigma`` in z, 1 voxel in-plane), thresholded with Otsu's method.

    Example:
        >>> img = np.zeros((1, 8, 8), np.float32); img[0, 2:5, 2:5] = 1.0
        >>> int(otsu_foreground(img, z_sigma=0.0).sum()) > 0
        True
    """
    x = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(x, (1.0, 99.8))
    x = np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    x = ndimage.gaussian_filter(x, (z_sigma, 1.0, 1.0))
    return x > threshold_otsu(x)


def estimate_object_size(image: np.ndarray, name: str = "the image") -> ObjectSize:
    """Mean in-plane object chord of one channel ``(Z, Y, X)`` or ``(Y, X)``, in voxels.

    Args:
        image: intensities, bright objects on a dark background (any dtype).
        name: how errors name the input.

    Raises:
        ValueError: not 2D/3D, non-finite values, or a constant image (no objects to measure).
    """
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name}: the object-size estimate needs a (Z, Y, X) or (Y, X) image, got shape {x.shape}")
    stride = 1
    while x.shape[0] * (x.shape[1] // stride) * (x.shape[2] // stride) > MAX_VOXELS:
        stride += 1
    x = x[:, ::stride, ::stride].astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: NaN or infinite values; the object size cannot be estimated")
    lo, hi = np.percentile(x, (1.0, 99.8))
    if hi <= lo:
        raise ValueError(f"{name}: the image is constant ({lo}); there are no objects whose size could be estimated")
    mask = otsu_foreground(x, z_sigma=1.0 if x.shape[0] >= 8 else 0.0)
    mask = ndimage.binary_opening(mask, structure=np.ones((1, 3, 3), bool))
    chord_yx = 0.5 * (mean_chord(mask, 1) + mean_chord(mask, 2)) * stride
    return ObjectSize(chord_yx=float(chord_yx), chord_z=float(mean_chord(mask, 0)), foreground_fraction=float(mask.mean()), stride=stride)
