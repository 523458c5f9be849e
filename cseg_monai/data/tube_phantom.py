"""Serial sections of tubes with known tracks: the test bed of axon tracing.

Axons cut by serial sections are tubes whose profiles drift from section to section, change
size, branch, start and end inside the stack, and vanish where a section is damaged.
:func:`make_tube_phantom` draws such a stack with exact truth: every tube is a random walk
of its centre (a drift velocity plus jitter) with a slowly varying radius; some branch
(a second tube of the same id diverging from the parent), some start or end inside the stack.
Damaged sections are blank (nothing to see, no truth there); shifted sections are translated
(image and truth alike), as a misaligned section is.

The image looks like EM of axons in cross-section: bright axoplasm, a dark myelin-like rim,
textured neuropil around, and noise.

Example:
    >>> image, truth = make_tube_phantom((12, 64, 64), n_tubes=5, seed=0)
    >>> image.dtype, truth.shape, 3 <= len(np.unique(truth[truth > 0])) <= 5
    (dtype('uint8'), (12, 64, 64), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

__all__ = ["make_tube_phantom"]


def make_tube_phantom(
    shape: Sequence[int] = (40, 192, 192),
    n_tubes: int = 14,
    radius_range: tuple[float, float] = (5.0, 9.0),
    drift: float = 1.5,
    jitter: float = 0.6,
    branch_fraction: float = 0.2,
    end_fraction: float = 0.3,
    missing_sections: Sequence[int] = (),
    shifted_sections: Sequence[int] = (),
    shift: tuple[int, int] = (4, -3),
    noise: float = 12.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A stack of tube cross-sections and its true ids.

    Args:
        shape: ``(Z, Y, X)``.
        n_tubes: tubes drawn (ids 1..n; a tube that never enters the field of view leaves its id unused).
        radius_range: radius of the profiles, pixels.
        drift: largest drift of a tube's centre per section, pixels (below the radius, so the
            profiles of one tube overlap from section to section).
        jitter: standard deviation of the random step added to the drift.
        branch_fraction: fraction of tubes that branch once (the branch keeps the id).
        end_fraction: fraction of tubes that start or end inside the stack.
        missing_sections: blank sections (image noise only, truth 0).
        shifted_sections: sections translated by ``shift`` (image and truth).
        shift: ``(dy, dx)`` of a shifted section.
        noise: standard deviation of the Gaussian noise, grey levels.
        seed: random seed.

    Returns:
        ``(image, truth)``: ``uint8`` image and ``uint32`` ids, both ``(Z, Y, X)``.

    Raises:
        ValueError: a shape that is not 3D or too small, bad counts or fractions.
    """
    if len(tuple(shape)) != 3:
        raise ValueError(f"shape must be (Z, Y, X), got {tuple(shape)}")
    z_n, y_n, x_n = (int(s) for s in shape)
    if min(y_n, x_n) < 4 * radius_range[1] or z_n < 2:
        raise ValueError(f"shape must be (Z >= 2, Y, X) with Y and X at least 4 radii, got {tuple(shape)}")
    if n_tubes < 1 or not 0 < radius_range[0] <= radius_range[1]:
        raise ValueError(f"n_tubes must be >= 1 and radius_range (low, high) positive, got {n_tubes}, {radius_range}")
    if not (0.0 <= branch_fraction <= 1.0 and 0.0 <= end_fraction <= 1.0):
        raise ValueError(f"branch_fraction and end_fraction are fractions, got {branch_fraction}, {end_fraction}")
    for z in list(missing_sections) + list(shifted_sections):
        if not 0 <= int(z) < z_n:
            raise ValueError(f"section {z} is outside the stack's {z_n} sections")
    rng = np.random.default_rng(seed)
    truth = np.zeros((z_n, y_n, x_n), np.uint32)
    yy, xx = np.mgrid[0:y_n, 0:x_n]

    def walk(start: int, stop: int, centre: np.ndarray, velocity: np.ndarray, radius: float, tube_id: int) -> None:
        pos = centre.astype(float)
        r = radius
        for z in range(start, stop):
            inside = (yy - pos[0]) ** 2 + (xx - pos[1]) ** 2 <= r * r
            for _ in range(int(2 * r)):  # tubes push each other aside, as axons do
                clash = inside & (truth[z] != 0) & (truth[z] != tube_id)
                if clash.sum() <= 0.05 * inside.sum():
                    break
                away = pos - np.argwhere(clash).mean(axis=0)
                pos = pos + away / (np.linalg.norm(away) + 1e-9)
                inside = (yy - pos[0]) ** 2 + (xx - pos[1]) ** 2 <= r * r
            free = inside & (truth[z] == 0)  # what still clashes stays with the tube drawn first
            truth[z][free] = tube_id
            step = velocity + rng.normal(0.0, jitter, 2)
            norm = np.linalg.norm(step)
            if norm > drift:
                step *= drift / norm
            pos = pos + step
            r = float(np.clip(r + rng.normal(0.0, 0.15), radius_range[0], radius_range[1]))

    for tube_id in range(1, n_tubes + 1):
        radius = float(rng.uniform(*radius_range))
        centre = rng.uniform([radius, radius], [y_n - radius, x_n - radius])
        angle = rng.uniform(0, 2 * np.pi)
        velocity = 0.6 * drift * np.array([np.sin(angle), np.cos(angle)]) * rng.uniform(0.2, 1.0)
        start, stop = 0, z_n
        if rng.random() < end_fraction:
            if rng.random() < 0.5:
                start = int(rng.integers(1, max(z_n // 2, 2)))
            else:
                stop = int(rng.integers(max(z_n // 2, 1), z_n))
        walk(start, stop, centre, velocity, radius, tube_id)
        if rng.random() < branch_fraction and stop - start > 6:
            at = int(rng.integers(start + 2, stop - 3))
            where = np.argwhere(truth[at] == tube_id)
            if len(where):
                side = np.array([-velocity[1], velocity[0]])
                side = side / (np.linalg.norm(side) + 1e-9) * drift
                walk(at, stop, where.mean(axis=0), velocity + side, radius * 0.8, tube_id)
    for z in range(z_n):  # crumbs left where tubes still clash are not profiles
        pieces, n = ndimage.label(truth[z] > 0)
        if n:
            small = np.flatnonzero(np.bincount(pieces.reshape(-1)) < 12)
            truth[z][np.isin(pieces, small[small > 0])] = 0
    for z in shifted_sections:
        truth[int(z)] = ndimage.shift(truth[int(z)], shift, order=0, mode="constant")
    for z in missing_sections:
        truth[int(z)] = 0
    # EM-like image: textured neuropil, dark rims, bright axoplasm, noise
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, truth.shape), (0, 2.0, 2.0))
    image = 120.0 + 25.0 * texture / (texture.std() + 1e-9)
    for z in range(z_n):
        inside = truth[z] > 0
        rim = find_boundaries(truth[z], mode="thick")  # also between touching profiles
        image[z][inside] = 185.0
        image[z][rim] = 45.0
    image = ndimage.gaussian_filter(image, (0, 0.8, 0.8)) + rng.normal(0.0, noise, truth.shape)
    for z in missing_sections:
        image[int(z)] = 120.0 + rng.normal(0.0, noise, (y_n, x_n))
    return np.clip(image, 0, 255).astype(np.uint8), truth
