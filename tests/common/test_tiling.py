"""Blocks with a halo: cores tile the grid, halos clip or reach past the border, the split rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cseg_monai.common.tiling import fit_block_shape, iter_blocks, reflect_indices


@pytest.mark.parametrize("shape,block,halo", [((10, 7), (4, 7), 2), ((5, 9, 8), 3, (1, 0, 2)), ((6,), (6,), 0)])
def test_cores_cover_the_grid_once_and_halos_clip(shape, block, halo):
    seen = np.zeros(shape, int)
    h = (halo,) * len(shape) if isinstance(halo, int) else halo
    for b in iter_blocks(shape, block, halo):
        seen[b.core_slices] += 1
        for (c0, c1), (o0, o1), n, hh in zip(b.core, b.outer, shape, h):
            assert o0 == max(c0 - hh, 0) and o1 == min(c1 + hh, n)
        inner = np.zeros([o1 - o0 for o0, o1 in b.outer])[b.inner]
        assert inner.shape == tuple(c1 - c0 for c0, c1 in b.core)
    assert (seen == 1).all()


def test_unclipped_asymmetric_halo_reaches_past_the_border():
    blocks = list(iter_blocks((5,), 3, ((2, 1),), clip=False))
    assert [(b.core, b.outer) for b in blocks] == [(((0, 3),), ((-2, 4),)), (((3, 5),), ((1, 6),))]
    assert blocks[0].inner == (slice(2, 5),)


def test_fit_block_shape_splits_the_largest_axis_until_it_fits():
    assert fit_block_shape((8, 8), 0, 64) == (8, 8)  # fits whole
    core = fit_block_shape((64, 512, 512), (0, 8, 8), 1 << 22)
    assert core == (64, 171, 256)
    assert 64 * (171 + 16) * (256 + 16) <= 1 << 22
    assert fit_block_shape((4, 4), 10, 1) == (1, 1)  # cannot fit: one voxel per core


def test_bad_arguments():
    with pytest.raises(ValueError, match="block_shape"):
        list(iter_blocks((4, 4), (0, 2)))
    with pytest.raises(ValueError, match="must have 1 or 2 entries"):
        list(iter_blocks((4, 4), (2, 2, 2)))
    with pytest.raises(ValueError, match="must not be negative"):
        list(iter_blocks((4, 4), 2, -1))
    with pytest.raises(ValueError, match="positive sizes"):
        list(iter_blocks((0, 4), 2))
    with pytest.raises(ValueError, match="max_voxels"):
        fit_block_shape((4, 4), 0, 0)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_reflect_indices_match_numpy_reflect(n):
    for before, after in itertools.product(range(0, 3 * n + 2), repeat=2):
        expected = np.pad(np.arange(n), (before, after), mode="reflect" if n > 1 else "edge")
        if n > 1 and (before > n - 1 or after > n - 1):
            continue  # numpy pads further than one period differently; the loop below covers it
        assert reflect_indices(n, -before, n + after).tolist() == expected.tolist()
    assert reflect_indices(3, -7, 0).tolist() == [1, 2, 1, 0, 1, 2, 1]  # several periods of 4
