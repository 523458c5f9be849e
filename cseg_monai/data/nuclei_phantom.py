"""Synthetic fluorescence nuclei volumes with exact instance labels (for demos, samples and tests).

Nuclei are ellipsoids (random centres, radii and orientation-free axis scaling) that may touch;
where two would overlap the voxel goes to the nucleus whose scaled distance is smaller, so
touching nuclei meet along a surface, like real ones. The image is bright, textured nuclei on a
dark background, blurred by a Gaussian point spread function and corrupted by Poisson noise.

Example:
    >>> image, labels = make_nuclei_phantom((24, 64, 64), n_nuclei=6, seed=0)
    >>> image.dtype, labels.dtype, int(labels.max()) <= 6, image.shape == labels.shape
    (dtype('uint8'), dtype('uint16'), True, True)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from cseg_monai.data.writers import write_tiff

__all__ = ["make_nuclei_phantom", "write_nuclei_dataset"]


def make_nuclei_phantom(
    shape: Sequence[int] = (32, 96, 96),
    n_nuclei: int = 12,
    radius_range: tuple[float, float] = (6.0, 11.0),
    spacing: Sequence[float] = (2.0, 1.0, 1.0),
    seed: int = 0,
    photons: float = 60.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8, labels uint16)`` of shape ``shape`` (Z, Y, X); radii in physical units.

    Args:
        shape: volume size, each axis >= 4.
        n_nuclei: nuclei to place (a few may vanish when others cover them).
        radius_range: ellipsoid semi-axes drawn from this range (units of ``spacing``).
        spacing: physical voxel size (z is usually coarser).
        seed: random seed.
        photons: Poisson noise level (higher = cleaner).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be 3 sizes >= 4, got {shape}")
    if n_nuclei < 1 or not 0 < radius_range[0] <= radius_range[1] or photons <= 0:
        raise ValueError("need n_nuclei >= 1, 0 < radius low <= high and photons > 0")
    rng = np.random.default_rng(seed)
    sp = np.asarray(spacing, dtype=np.float64)
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, sp)], indexing="ij"), axis=-1)
    best = np.full(shape, np.inf)
    labels = np.zeros(shape, np.uint16)
    extent = np.asarray(shape) * sp
    for k in range(1, n_nuclei + 1):
        centre = rng.uniform(0.1, 0.9, 3) * extent
        radii = rng.uniform(*radius_range, 3)
        d = np.sqrt((((grid - centre) / radii) ** 2).sum(-1))
        inside = (d <= 1.0) & (d < best)
        labels[inside] = k
        best = np.where(inside, d, best)
    ids = np.unique(labels[labels > 0])
    remap = np.zeros(int(labels.max()) + 1, np.uint16)
    remap[ids] = np.arange(1, len(ids) + 1)
    labels = remap[labels]
    brightness = rng.uniform(0.55, 0.95, len(ids) + 1)
    brightness[0] = 0.08
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.5)
    signal = brightness[labels] * (1 + 0.15 * texture / max(texture.std(), 1e-6))
    signal = ndimage.gaussian_filter(np.clip(signal, 0, None), sigma=1.0 / sp)
    noisy = rng.poisson(np.clip(signal, 0, None) * photons) / photons
    image = np.clip(noisy / max(np.percentile(noisy, 99.9), 1e-6) * 230, 0, 255).astype(np.uint8)
    return image, labels


def write_nuclei_dataset(out_dir: str | os.PathLike, n_volumes: int = 2, shape: Sequence[int] = (32, 96, 96), seed: int = 0, **kwargs) -> str:
    """Write ``out_dir/images/{i}.tif`` and ``out_dir/labels/{i}.tif`` (the instance ``folder`` layout)."""
    root = Path(out_dir)
    for i in range(int(n_volumes)):
        image, labels = make_nuclei_phantom(shape, seed=seed + i, **kwargs)
        write_tiff(root / "images" / f"{i}.tif", image)
        write_tiff(root / "labels" / f"{i}.tif", labels)
    return str(root)
