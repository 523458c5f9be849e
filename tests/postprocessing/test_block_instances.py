"""Instances in blocks, stitched by overlap, against the whole-volume segmentation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import find_boundaries

from cseg_monai.data.nuclei_phantom import make_nuclei_phantom
from cseg_monai.metrics.instances import instance_scores
from cseg_monai.postprocessing import InstanceParams, segment_instances
from cseg_monai.postprocessing.block_instances import (
    id_counts,
    merge_table,
    offset_labels,
    overlap_pairs,
    relabel,
    segment_in_blocks,
)

PARAMS = InstanceParams(method="multicut", sigma_seeds=2.0, min_supervoxel_size=5, mask_watershed=True, min_size=40)


@pytest.fixture(scope="module")
def nuclei():
    """Probabilities of touching nuclei as a good network gives them: soft boundaries, foreground."""
    labels = make_nuclei_phantom((24, 120, 120), n_nuclei=40, radius_range=(7.0, 12.0), seed=5)[1].astype(np.int64)
    boundary = ndimage.gaussian_filter(find_boundaries(labels, mode="inner").astype(np.float32), 0.7) * 2.5
    foreground = ndimage.gaussian_filter((labels > 0).astype(np.float32), 0.7)
    return labels, np.stack([np.clip(boundary, 0, 1), foreground]).astype(np.float32)


def _whole(prob: np.ndarray) -> np.ndarray:
    return segment_instances(prob[0], PARAMS, foreground=prob[1] >= PARAMS.foreground_threshold)


def test_blocks_with_a_halo_give_the_whole_volume_objects(nuclei):
    truth, prob = nuclei
    whole = _whole(prob)
    blocks = segment_in_blocks(prob, PARAMS, block_shape=(12, 40, 40), halo=(6, 24, 24))  # 2 x 3 x 3 blocks
    assert blocks.dtype == np.uint32 and blocks.max() > 20
    versus = instance_scores(whole.astype(np.int64), blocks.astype(np.int64), thresholds=(0.5, 0.9))
    assert versus["f1"][0] >= 0.97 and versus["f1"][1] >= 0.9, versus
    assert versus["splits"] == 0, versus  # no object cut by a block border keeps two ids
    # nuclei across a border (more than 5% of their voxels on each side) are one id
    crossing = 0
    for obj in range(1, int(whole.max()) + 1):
        where = np.argwhere(whole == obj)
        sides = np.unique(where // np.array([12, 40, 40]), axis=0, return_counts=True)[1]
        if len(sides) > 1 and sides.min() > 0.05 * len(where):
            crossing += 1
            ids, counts = np.unique(blocks[whole == obj], return_counts=True)
            assert counts.max() >= 0.95 * len(where), (obj, ids, counts)
    assert crossing >= 10  # the test is about them
    assert instance_scores(truth, blocks.astype(np.int64), thresholds=(0.5,))["f1"][0] >= 0.9


def test_without_stitching_the_border_objects_split(nuclei):
    """The same blocks, each segmented alone (no halo): the check above would fail."""
    _, prob = nuclei
    whole = _whole(prob)
    alone = segment_in_blocks(prob, PARAMS, block_shape=(12, 40, 40), halo=(0, 0, 0))
    assert instance_scores(whole.astype(np.int64), alone.astype(np.int64), thresholds=(0.5,))["splits"] > 5


def test_size_filter_applies_to_whole_objects(nuclei):
    """An object of 60 voxels cut into four 15-voxel fragments by the block borders survives min_size 40."""
    prob = np.zeros((2, 8, 32, 32), np.float32)
    prob[1, 3:6, 14:19, 14:18] = 1.0  # 60 voxels across the (16, 16) corner of four blocks
    out = segment_in_blocks(prob, PARAMS, block_shape=(8, 16, 16), halo=(0, 4, 4))
    assert len(np.unique(out[out > 0])) == 1 and (out > 0).sum() == 60


def test_pieces():
    a = offset_labels(np.array([[0, 3, 3], [0, 3, 1]]), 2)
    assert a.dtype == np.uint64 and a[0, 0] == 0 and a[0, 1] == (3 << 32) + 3
    with pytest.raises(ValueError, match="block-local ids"):
        offset_labels(np.array([-1]), 0)
    b = np.array([[0, 9, 9], [0, 8, 8]], np.uint64)
    # 3 overlaps 9 (IoU 2/3) and 8 (1/4); 1 overlaps 8 (1/2, not above 0.5)
    assert overlap_pairs(a, b).tolist() == [[(3 << 32) + 3, 9]]
    halves = overlap_pairs(np.array([7, 7, 7, 7]), np.array([1, 1, 2, 2]))  # a tie at IoU 0.5 joins neither half
    assert halves.shape == (0, 2)
    assert overlap_pairs(a, b, min_iou=0.2).tolist() == [[(3 << 32) + 1, 8], [(3 << 32) + 3, 8], [(3 << 32) + 3, 9]]
    with pytest.raises(ValueError, match="different shapes"):
        overlap_pairs(a, b[:1])
    ids, counts, bg = id_counts(np.array([5, 5, 0, 6]), np.array([1, 1, 1, 0], bool))
    assert ids.tolist() == [5, 6] and counts.tolist() == [2, 1] and bg.tolist() == [2, 0]
    keys, values = merge_table(np.array([5, 6, 7], np.uint64), np.array([2, 3, 3]), np.array([[6, 99], [99, 7]], np.uint64), np.array([2, 0, 0]))
    assert keys.tolist() == [5, 6, 7] and values.tolist() == [0, 1, 1]  # 5 lies in the background; 6 and 7 join through halo id 99
    assert relabel(np.array([0, 7, 6]), keys, values).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="does not know"):
        relabel(np.array([8]), keys, values)
    with pytest.raises(ValueError, match="shape_stats"):
        merge_table(keys, np.array([2, 3, 3]), np.zeros((0, 2), np.uint64), min_major_axis=3.0)


@pytest.mark.parametrize(
    "filters",
    [
        {"min_major_axis": 16.0, "max_major_axis": 26.0},  # drops the smallest and the merged, elongated objects
        {"edge_min_fraction": 0.6},  # nuclei mostly outside the field of view
        {"min_major_axis": 14.0, "edge_min_fraction": 0.8, "max_size": 2500},
    ],
)
def test_the_major_axis_and_edge_sliver_filters_apply_to_whole_objects(nuclei, filters):
    """Pieces' moments and edge contacts add up across blocks: the same objects go as in memory."""
    prob = nuclei[1][:, :, 9:111, 13:107]  # a crop: nuclei cut by the Y / X edges
    params = PARAMS.replace(**filters)
    whole = segment_instances(prob[0], params, foreground=prob[1] >= params.foreground_threshold)
    unfiltered = _whole(prob)
    assert 0 < whole.max() < unfiltered.max()  # the filters remove something here
    blocks = segment_in_blocks(prob, params, block_shape=(12, 40, 40), halo=(6, 24, 24))
    assert blocks.max() == whole.max()
    versus = instance_scores(whole.astype(np.int64), blocks.astype(np.int64), thresholds=(0.5,))
    assert versus["f1"][0] == 1.0, versus
