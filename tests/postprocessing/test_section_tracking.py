"""Tracing through serial sections: Hungarian linking, gaps, branches, anchors, the greedy baseline, profiles from probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from cseg_monai.data.tube_phantom import make_tube_phantom
from cseg_monai.metrics.tracing import section_profiles_of, tracing_scores
from cseg_monai.postprocessing.section_tracking import (
    TRACK_FIELDS,
    LinkParams,
    assign,
    read_anchors,
    section_profiles,
    stitch_greedy,
    trace_sections,
    write_tracks,
)

from conftest import require_data


def _shuffled(profiles: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per-section ids that do not agree between sections (as a user's 2D segmentation gives them)."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(profiles)
    for z in range(profiles.shape[0]):
        labels = np.unique(profiles[z][profiles[z] > 0])
        lut = np.zeros(int(profiles[z].max()) + 1, np.int64)
        lut[labels] = rng.permutation(len(labels)) + 1 + int(rng.integers(0, 50))
        out[z] = lut[profiles[z]]
    return out


@pytest.mark.parametrize(("missing", "shifted"), [((), ()), ((11, 26), ()), ((18,), (30,))])
def test_phantom_tubes_are_traced_through_gaps_and_shifts_better_than_greedy_stitching(missing, shifted):
    _, truth = make_tube_phantom((40, 160, 160), n_tubes=12, seed=3, missing_sections=missing, shifted_sections=shifted)
    profiles = _shuffled(section_profiles_of(truth))
    ids, tracks = trace_sections(profiles)
    ours = tracing_scores(truth, ids.astype(np.int64))
    greedy = tracing_scores(truth, stitch_greedy(profiles).astype(np.int64))
    assert ours["link_f1"] >= 0.95 and ours["merges"] == 0, ours
    assert ours["arand"] <= greedy["arand"] and ours["link_f1"] >= greedy["link_f1"]
    if missing:  # greedy stitching cannot jump a blank section: every tube breaks there
        assert greedy["splits"] >= len(missing) * 5 and ours["splits"] <= 2, (ours, greedy)
    assert {row["id"] for row in tracks} == set(np.unique(ids[ids > 0]).tolist())
    assert all(set(row) == set(TRACK_FIELDS) for row in tracks)


def test_a_drifting_profile_and_a_branch_keep_one_id():
    stack = np.zeros((6, 40, 40), np.int64)
    for z in range(6):
        stack[z, 5 + z : 13 + z, 5 : 13] = 3  # drifts down by a pixel per section
    stack[3:, 10:16, 20:26] = 7  # a branch appears next to it ...
    stack[3, 10:16, 12:26] = 3  # ... from a profile that spans both in section 3
    stack[3][stack[3] == 7] = 0
    ids, _ = trace_sections(stack, params=LinkParams(min_area=0))
    assert ids[0, 6, 6] == ids[5, 12, 6] == ids[5, 12, 22]  # the drifting tube and its branch
    assert len(np.unique(ids[ids > 0])) == 1


def test_two_objects_stacked_in_dense_tissue_are_not_joined():
    """One cell ends and two touching neighbours start over it: no branch (they touch, so they are two objects)."""
    stack = np.zeros((4, 20, 20), np.int64)
    stack[:2, 2:18, 2:18] = 1
    stack[2:, 2:18, 2:10] = 2
    stack[2:, 2:18, 10:18] = 3
    ids, _ = trace_sections(stack, params=LinkParams(min_area=0))
    assert len({int(ids[2, 5, 5]), int(ids[2, 5, 15])}) == 2


def test_a_profile_that_grows_past_the_gate_and_two_that_join_keep_one_id():
    """Gap links: a track that went on into nothing, and a profile starting over it, are one object
    (a cell's cap grows fast in anisotropic sections; two branches join into a much larger profile)."""
    stack = np.zeros((6, 40, 40), np.int64)
    stack[:3, 18:22, 18:22] = 1  # 16 px ...
    stack[3:, 8:32, 8:32] = 1  # ... then 576 px over it: beyond the gate (area term alone 0.5 * log 36 = 1.8)
    ids, _ = trace_sections(stack, params=LinkParams(min_area=0))
    assert len(np.unique(ids[ids > 0])) == 1
    split, _ = trace_sections(stack, params=LinkParams(min_area=0, gap_links=False))
    assert len(np.unique(split[split > 0])) == 2  # what the gap links mend
    join = np.zeros((4, 40, 60), np.int64)
    join[:2, 10:20, 5:15], join[:2, 10:20, 45:55] = 1, 2  # two branches, apart ...
    join[2:, 5:25, 3:57] = 1  # ... joined into one profile that neither continues into (the cost is above the gate)
    ids, _ = trace_sections(join, params=LinkParams(min_area=0))
    assert len(np.unique(ids[ids > 0])) == 1


def test_a_gap_is_not_linked_where_the_profiles_starting_over_an_ended_one_touch_each_other():
    """Dense tissue: a cell ends and two touching neighbours start over it, none within the gate
    of the ended cell's track (so the gap links, not the branches, decide)."""
    stack = np.zeros((4, 20, 20), np.int64)
    stack[:2, 8:12, 4:16] = 1
    stack[2:, 2:18, 2:10] = 2
    stack[2:, 2:18, 10:18] = 3
    ids, _ = trace_sections(stack, params=LinkParams(min_area=0))
    assert len(np.unique(ids[ids > 0])) == 3
    lone = stack.copy()
    lone[2:][lone[2:] == 3] = 0  # one neighbour alone: the same gap is linked
    ids, _ = trace_sections(lone, params=LinkParams(min_area=0))
    assert len(np.unique(ids[ids > 0])) == 1


def test_crumbs_join_the_object_that_covers_them_in_either_neighbouring_section():
    stack = np.zeros((5, 30, 30), np.int64)
    stack[:3, 2:12, 2:11] = 1  # object A
    stack[3:, 2:10, 2:11] = 1
    stack[2, 10:12, 10:12] = 3  # a 4 px crumb in section 2: A covers 2 px of it in section 1 ...
    stack[3:, 10:20, 10:20] = 2  # ... object B, starting in section 3, all 4
    stack[0, 25:27, 2:4] = 5  # a crumb over nothing: on its own
    ids, _ = trace_sections(stack)
    assert ids[2, 10, 10] == ids[3, 15, 15] != ids[2, 5, 5]  # the crumb is B's first piece, not A's
    assert ids[0, 25, 2] not in (ids[2, 5, 5], ids[3, 15, 15])
    assert len(np.unique(ids[ids > 0])) == 3
    chain = np.zeros((4, 30, 30), np.int64)
    chain[0, 5:7, 5:7] = 1  # crumb, crumb, then the object: all one
    chain[1, 5:7, 5:8] = 1
    chain[2:, 2:14, 2:14] = 1
    ids, _ = trace_sections(chain)
    assert len(np.unique(ids[ids > 0])) == 1
    taper = np.zeros((6, 30, 30), np.int64)  # an axon tapering to its end: every profile from section 3 on is a crumb
    taper[:3, 5:11, 5:11] = 1
    taper[3, 5:9, 5:9] = 1  # 16 px; section 4's crumb lies 12 px over it and 15 px under section 5's
    taper[4, 6:9, 5:10], taper[5, 6:9, 5:11] = 1, 1
    ids, _ = trace_sections(taper)
    assert len(np.unique(ids[ids > 0])) == 1
    partial = np.zeros((5, 30, 30), np.int64)  # the object covers 9 of the first crumb's 16 px; the next crumb all 16
    partial[:3, 5:13, 5:13] = 1
    partial[3:, 10:14, 10:14] = 1
    ids, _ = trace_sections(partial)
    assert len(np.unique(ids[ids > 0])) == 1  # the chain of crumbs joins the object that covers one of them


def test_anchors_fix_identities_and_undo_a_switch():
    """Two tubes swap places halfway (a switch the linking makes); anchors after it restore the ids."""
    stack = np.zeros((8, 30, 40), np.int64)
    for z in range(8):
        a, b = (5, 25) if z < 4 else (25, 5)
        stack[z, 10:18, a : a + 8] = 1
        stack[z, 10:18, b : b + 8] = 2
    anchors = [(0, 14, 9, 10), (0, 14, 29, 20), (4, 14, 9, 20), (4, 14, 29, 10)]
    ids, tracks = trace_sections(stack, anchors=anchors)
    assert ids[0, 14, 9] == 10 and ids[0, 14, 29] == 20
    assert ids[7, 14, 29] == 10 and ids[7, 14, 9] == 20  # after the anchors of section 4
    free, _ = trace_sections(stack)
    assert free[7, 14, 9] == free[0, 14, 9]  # without anchors the linking follows position
    with pytest.raises(ValueError, match="two anchor ids"):
        trace_sections(stack, anchors=[(0, 14, 9, 10), (0, 15, 10, 11)])
    with pytest.raises(ValueError, match="outside"):
        trace_sections(stack, anchors=[(9, 1, 1, 10)])


def test_an_anchor_beyond_the_gate_of_its_own_track_is_continued_by_the_track_that_reaches_it():
    """Object 10 has two pieces (left, anchored; right, not). The left one ends; the next anchor is on
    the right one's continuation: the right track continues into it and takes id 10 (it used to be
    handed to the far left track, which left the right piece a split of its own)."""
    stack = np.zeros((4, 20, 60), np.int64)
    stack[:2, 5:15, 2:12] = 1  # left piece, sections 0-1
    stack[:, 5:15, 45:55] = 2  # right piece, all sections
    ids, _ = trace_sections(stack, anchors=[(0, 10, 6, 10), (2, 10, 50, 10)])
    assert ids[0, 10, 6] == ids[0, 10, 50] == ids[3, 10, 50] == 10


def test_huge_per_section_ids_are_fine():
    stack = np.zeros((3, 10, 10), np.int64)
    stack[:, 2:6, 2:6] = np.array([3_000_000_000, 7, 9_000_000_000_000])[:, None, None]
    ids, _ = trace_sections(stack, params=LinkParams(min_area=0))
    assert np.unique(ids[ids > 0]).tolist() == [1]
    assert np.unique(stitch_greedy(stack)[stack > 0]).tolist() == [1]


def test_assignment_gates_and_unlinked_costs():
    assert assign(np.array([[0.2, 0.1], [0.3, np.inf]]), 1.0) == [(0, 1), (1, 0)]
    assert assign(np.full((2, 2), np.inf), 1.0) == []
    assert assign(np.zeros((0, 3)), 1.0) == []


def test_greedy_stitching_is_cellpose_s_rule():
    stack = np.zeros((3, 10, 10), np.int64)
    stack[0, 0:4, 0:4] = 1
    stack[1, 1:5, 1:5] = 5  # IoU 9 / 23 > 0.25: same id
    stack[2, 6:9, 6:9] = 2  # no overlap: new id
    out = stitch_greedy(stack)
    assert out[0, 1, 1] == out[1, 2, 2] and out[2, 7, 7] not in (0, out[0, 1, 1])
    with pytest.raises(ValueError, match="IoU"):
        stitch_greedy(stack, 1.5)


def test_profiles_from_a_probability_map_split_touching_profiles():
    prob = np.zeros((40, 60))
    yy, xx = np.mgrid[:40, :60]
    for cy, cx in ((20, 18), (20, 36)):  # two discs that touch
        prob[(yy - cy) ** 2 + (xx - cx) ** 2 <= 100] = 0.9
    prob += np.random.default_rng(0).normal(0, 0.05, prob.shape)
    labels = section_profiles(prob, spacing=(0.01, 0.01), smooth_um=0.02, erode_um=0.03, min_area_um2=0.002)
    assert labels.max() == 2 and labels[20, 18] != labels[20, 36]
    assert section_profiles(np.zeros((10, 10))).max() == 0
    thin = np.zeros((10, 20))
    thin[2:8, 4:6] = 0.9  # 2 pixels wide: the erosion removes it, it stays a profile
    thin[2:8, 10:18] = 0.9
    assert section_profiles(thin, erode_um=1.0).max() == 2
    with pytest.raises(ValueError, match="NaN"):
        section_profiles(np.full((4, 4), np.nan))


def test_anchors_csv_and_tracks_csv(tmp_path):
    (tmp_path / "a.csv").write_text("section,y,x,id\n0,4.5,3,7\n")
    assert read_anchors(tmp_path / "a.csv") == [(0, 4.5, 3.0, 7)]
    (tmp_path / "bad.csv").write_text("section,y,x\n0,1,2\n")
    with pytest.raises(ValueError, match="bad.csv.*missing"):
        read_anchors(tmp_path / "bad.csv")
    (tmp_path / "nan.csv").write_text("section,y,x,id\n0,one,2,3\n")
    with pytest.raises(ValueError, match="nan.csv row 2"):
        read_anchors(tmp_path / "nan.csv")
    path = write_tracks(tmp_path / "t.csv", [{"id": 1, "section": 0, "centroid_y": 1.0, "centroid_x": 2.0, "area": 3, "link_cost": 0.5, "profile": 9}])
    assert path.read_text().splitlines() == [",".join(TRACK_FIELDS), "1,0,1.0,2.0,3,0.5,9"]


def test_bad_settings_and_stacks():
    with pytest.raises(ValueError, match="max_skip"):
        LinkParams(max_skip=2)
    with pytest.raises(ValueError, match="unknown"):
        LinkParams().replace(cost=1)
    with pytest.raises(ValueError, match="Z, Y, X"):
        trace_sections(np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="integer"):
        trace_sections(np.zeros((2, 4, 4), np.float32))


@pytest.mark.parametrize(("name", "dataset"), [("gala_fibsem", "stack"), ("plantseg", "label")])
def test_real_volumes_traced_from_their_true_profiles(name, dataset):
    """gala's neurons (FIB-SEM) and the ovule's cells, sections as z planes: links recovered, few merges."""
    import h5py

    root = require_data(name)
    path = root / ("train-gt.lzf.h5" if name == "gala_fibsem" else "sample_ovule.h5")
    with h5py.File(path, "r") as f:
        truth = f[dataset][:].astype(np.int64)
    profiles = _shuffled(section_profiles_of(truth))
    ours = tracing_scores(truth, trace_sections(profiles)[0].astype(np.int64), min_profile_area=20)
    greedy = tracing_scores(truth, stitch_greedy(profiles).astype(np.int64), min_profile_area=20)
    assert ours["link_f1"] >= 0.95 and ours["link_precision"] >= 0.99, ours
    assert ours["splits"] < greedy["splits"], (ours, greedy)


def test_profiles_grow_back_the_border_the_interior_left_out():
    prob = np.zeros((20, 20))
    prob[6:14, 6:14] = 0.9  # an interior one pixel inside an object of rows / columns 5-14
    grown = section_profiles(prob, dilate_um=1.0)
    assert (grown > 0).sum() == 10 * 10 - 4  # the square grown by one pixel (city-block corners left)
    assert (section_profiles(prob) > 0).sum() == 64
