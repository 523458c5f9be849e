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

__all__ = ["draw_nuclei_phantom", "make_nuclei_phantom", "write_nuclei_dataset"]


def make_nuclei_phantom(
    shape: Sequence[int] = (32, 96, 96),
    n_nuclei: int = 12,
    radius_range: tuple[float, float] = (6.0, 11.0),
    spacing: Sequence[float] = (2.0, 1.0, 1.0),
    seed: int = 0,
    photons: float = 60.0,
    background: float = 0.08,
    blur: float = 1.0,
    texture: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8, labels uint16)`` of shape ``shape`` (Z, Y, X); radii in physical units.

    Args:
        shape: volume size, each axis >= 4.
        n_nuclei: nuclei to place (a few may vanish when others cover them).
        radius_range: ellipsoid semi-axes drawn from this range (units of ``spacing``).
        spacing: physical voxel size (z is usually coarser).
        seed: random seed.
        photons: Poisson noise level (higher = cleaner).
        background: background brightness (nuclei are 0.55-0.95).
        blur: point-spread-function sigma in physical units.
        texture: relative amplitude of the chromatin-like texture.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be 3 sizes >= 4, got {shape}")
    if n_nuclei < 1 or not 0 < radius_range[0] <= radius_range[1] or photons <= 0:
        raise ValueError("need n_nuclei >= 1, 0 < radius low <= high and photons > 0")
    if not (0 <= background < 0.55 and blur >= 0 and texture >= 0):
        raise ValueError(f"need 0 <= background < 0.55, blur >= 0 and texture >= 0, got {background}, {blur}, {texture}")
    rng = np.random.default_rng(seed)
    sp = np.asarray(spacing, dtype=np.float64)
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, sp)], indexing="ij"), axis=-1)
    best = np.full(shape, np.inf)
    labels = np.zeros(shape, np.uint16)
    extent = np.asarray(shape) * sp
    for k in range(1, n_nuclei + 1):
        centre = rng.uniform(0.1, 0.9, 3) * extent
        radii = rng.uniform(*radius_range, 3)
        lo = np.maximum(np.floor((centre - radii) / sp).astype(int), 0)
        hi = np.minimum(np.ceil((centre + radii) / sp).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        d = np.sqrt((((grid[box] - centre) / radii) ** 2).sum(-1))
        inside = (d <= 1.0) & (d < best[box])
        labels[box][inside] = k
        best[box] = np.where(inside, d, best[box])
    ids = np.unique(labels[labels > 0])
    remap = np.zeros(int(labels.max()) + 1, np.uint16)
    remap[ids] = np.arange(1, len(ids) + 1)
    labels = remap[labels]
    brightness = rng.uniform(0.55, 0.95, len(ids) + 1)
    brightness[0] = background
    noise = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.5)
    signal = brightness[labels] * (1 + texture * noise / max(noise.std(), 1e-6))
    if blur > 0:
        signal = ndimage.gaussian_filter(np.clip(signal, 0, None), sigma=blur / sp)
    noisy = rng.poisson(np.clip(signal, 0, None) * photons) / photons
    image = np.clip(noisy / max(np.percentile(noisy, 99.9), 1e-6) * 230, 0, 255).astype(np.uint8)
    return image, labels


def draw_nuclei_phantom(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """One phantom drawn over wide ranges: ``(image, labels uint16, spacing)``, all from ``seed``.

    Nuclei 3-18 voxels in radius in-plane, z voxels 1-5x coarser, 5-45% of the volume covered,
    point spread 0.3-2.5 voxels, 4-300 photons, background 0-0.35, texture 0.05-0.45; the image
    is uint8, uint16 (offset and 12-bit range) or float32 (any scale). For a generalist model
    that must not care how a microscope renders nuclei. The spacing is in voxel units of Y, X.

    Example:
        >>> image, labels, spacing = draw_nuclei_phantom(3)
        >>> image.shape == labels.shape, bool(labels.max() > 0), spacing[1] == 1.0
        (True, True, True)
    """
    rng = np.random.default_rng(10_000 + int(seed))
    aniso = float(rng.uniform(1.0, 5.0))
    r_lo = float(rng.uniform(3.0, 14.0))
    r_hi = r_lo * float(rng.uniform(1.1, 1.6))
    size = int(np.clip(2 * r_hi * rng.uniform(4.0, 7.0), 48, 160))
    depth = int(np.clip(size / aniso * rng.uniform(0.3, 1.0), 5, 48))
    fraction = float(rng.uniform(0.05, 0.45))
    nucleus = 4.0 / 3.0 * np.pi * ((r_lo + r_hi) / 2) ** 3 / aniso
    n = int(np.clip(fraction * depth * size * size / nucleus, 3, 150))
    spacing = (aniso, 1.0, 1.0)
    image, labels = make_nuclei_phantom(
        (depth, size, size), n_nuclei=n, radius_range=(r_lo, r_hi), spacing=spacing, seed=int(seed),
        photons=float(np.exp(rng.uniform(np.log(4.0), np.log(300.0)))), background=float(rng.uniform(0.0, 0.35)),
        blur=float(rng.uniform(0.3, 2.5)), texture=float(rng.uniform(0.05, 0.45)),
    )  # fmt: skip
    kind = int(rng.integers(3))
    if kind == 1:
        image = (image.astype(np.float64) / 255 * rng.uniform(500, 4000) + rng.uniform(0, 800)).astype(np.uint16)
    elif kind == 2:
        image = (image.astype(np.float32) / 255 * float(rng.uniform(0.01, 1000)) - float(rng.uniform(0, 10))).astype(np.float32)
    return image, labels, spacing


def write_nuclei_dataset(out_dir: str | os.PathLike, n_volumes: int = 2, shape: Sequence[int] = (32, 96, 96), seed: int = 0, **kwargs) -> str:
    """Write ``out_dir/images/{i}.tif`` and ``out_dir/labels/{i}.tif`` (the instance ``folder`` layout)."""
    root = Path(out_dir)
    for i in range(int(n_volumes)):
        image, labels = make_nuclei_phantom(shape, seed=seed + i, **kwargs)
        write_tiff(root / "images" / f"{i}.tif", image)
        write_tiff(root / "labels" / f"{i}.tif", labels)
    return str(root)
