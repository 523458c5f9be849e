"""Block-wise connected components equal whole-volume labelling, ids and numbering included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cseg_monai.common.tiling import iter_blocks
from cseg_monai.postprocessing.block_components import forward_offsets, local_components, merge_components, touching_pairs
from cseg_monai.postprocessing.block_instances import relabel
from cseg_monai.transforms.clefts import cleft_components


def _blockwise(mask: np.ndarray, block: tuple[int, ...], min_size: int = 0) -> np.ndarray:
    raw = np.zeros(mask.shape, np.uint64)
    tables, cores = [], []
    for k, b in enumerate(iter_blocks(mask.shape, block, halo=0)):
        raw[b.core_slices], table = local_components(mask[b.core_slices], b.core, mask.shape, k)
        tables.append(table)
        cores.append(b.core)
    pairs = np.concatenate([touching_pairs(raw, core) for core in cores])
    keys, values = merge_components(tables, pairs, min_size)
    return relabel(raw, keys, values)


@pytest.mark.parametrize(
    ("shape", "block", "density", "min_size"),
    [
        ((9, 40, 37), (4, 16, 10), 0.3, 0),  # blobs crossing many borders, diagonal contacts included
        ((9, 40, 37), (3, 7, 11), 0.45, 6),  # near percolation: long chains; small components dropped
        ((5, 30, 30), (5, 30, 30), 0.3, 0),  # one block
        ((40, 50), (13, 9), 0.4, 3),  # 2D: 8-connected
    ],
)
def test_equals_whole_volume_labelling(shape, block, density, min_size):
    rng = np.random.default_rng(sum(shape))
    mask = ndimage.uniform_filter(rng.random(shape), 2) < density
    expected = cleft_components(mask.astype(np.float32), 0.5, min_size)
    assert expected.max() >= 2  # components to tell apart (and, with these blocks, to join across borders)
    got = _blockwise(mask, block, min_size)
    assert np.array_equal(got, expected)


def test_a_diagonal_contact_across_a_block_corner_joins():
    mask = np.zeros((2, 4, 4), bool)
    mask[0, 1, 1] = mask[1, 2, 2] = True  # touch only at a corner shared by eight 1-voxel-offset blocks
    got = _blockwise(mask, (1, 2, 2))
    assert got[0, 1, 1] == got[1, 2, 2] == 1 and got.max() == 1


def test_pieces_sizes_and_first_voxels():
    mask = np.zeros((1, 3, 6), bool)
    mask[0, 2, 3:6] = True
    ids, table = local_components(mask[:, :, 3:], ((0, 1), (0, 3), (3, 6)), mask.shape, block_index=2)
    assert table["counts"].tolist() == [3] and table["first"].tolist() == [2 * 6 + 3]
    assert int(table["ids"][0]) >> 32 == 3 and ids[0, 2, 0] == table["ids"][0]
    assert len(forward_offsets(3)) == 13


def test_bad_inputs():
    with pytest.raises(ValueError, match="core"):
        local_components(np.zeros((2, 2), bool), ((0, 3), (0, 2)), (3, 2), 0)
    with pytest.raises(ValueError, match="no block table"):
        merge_components([{"ids": np.array([5], np.uint64), "counts": np.array([1]), "first": np.array([0])}], np.array([[5, 7]], np.uint64))
    with pytest.raises(ValueError, match="min_size"):
        merge_components([], np.zeros((0, 2)), -1)
