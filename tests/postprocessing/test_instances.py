"""Instances from boundaries: multicut and agglomeration on graphs with known answers, the
pipeline on real nuclei and cells (boundaries from their ground truth), filtering, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from cseg_monai.common import data_root
from cseg_monai.metrics.instances import instance_scores
from cseg_monai.postprocessing import (
    check_filter_limits,
    edge_costs,
    edge_slivers,
    filter_instances,
    major_axis_lengths,
    mean_boundary_agglomeration,
    multicut,
    region_adjacency,
    segment_instances,
    watershed_supervoxels,
)

from conftest import require_data


def _objective(labels, uv, costs):
    return float(sum(c for (u, v), c in zip(uv, costs) if labels[u] != labels[v]))


def _partitions(n):
    """Every partition of range(n) as a label list (restricted growth strings)."""
    def grow(prefix, top):
        if len(prefix) == n:
            yield list(prefix)
            return
        for k in range(top + 2):
            yield from grow(prefix + [k], max(top, k))
    yield from grow([0], 0)


def test_multicut_cycle_with_a_unique_optimum():
    uv = np.array([[0, 1], [1, 2], [2, 3], [3, 0]])
    labels = multicut(4, uv, np.array([1.0, 2.0, 3.0, -5.0]))
    # cutting the repulsive edge needs a second cut on the cycle: the cheapest is (0, 1)
    assert labels[1] == labels[2] == labels[3] != labels[0]


@pytest.mark.parametrize("solver", ["gaec", "kernighan-lin"])
def test_multicut_matches_brute_force_on_small_random_graphs(solver):
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(25):
        n = 7
        pairs = [p for p in itertools.combinations(range(n), 2) if rng.random() < 0.6]
        uv = np.array(pairs)
        costs = rng.normal(0.3, 1.0, len(uv))
        best = min(_objective(lab, uv, costs) for lab in _partitions(n))
        got = _objective(multicut(n, uv, costs, solver=solver), uv, costs)
        assert got >= best - 1e-9
        gaps.append(got - best)
    optimal = np.mean(np.array(gaps) < 1e-9)
    assert optimal >= (0.9 if solver == "kernighan-lin" else 0.7), gaps  # heuristics: mostly optimal


def test_kernighan_lin_never_worse_than_gaec():
    rng = np.random.default_rng(1)
    for _ in range(25):
        pairs = [p for p in itertools.combinations(range(9), 2) if rng.random() < 0.5]
        uv, costs = np.array(pairs), rng.normal(0.2, 1.0, len(pairs))
        kl = _objective(multicut(9, uv, costs, solver="kernighan-lin"), uv, costs)
        assert kl <= _objective(multicut(9, uv, costs, solver="gaec"), uv, costs) + 1e-9


def test_mean_boundary_agglomeration_uses_the_merged_mean():
    uv = np.array([[0, 1], [0, 2], [1, 2]])
    p, s = np.array([0.1, 0.9, 0.2]), np.array([1.0, 1.0, 3.0])
    # after 0+1 merge, their edge to 2 has mean (0.9 * 1 + 0.2 * 3) / 4 = 0.375
    assert mean_boundary_agglomeration(3, uv, p, s, threshold=0.5).tolist() == [0, 0, 0]
    assert mean_boundary_agglomeration(3, uv, p, s, threshold=0.3).tolist() == [0, 0, 1]
    assert mean_boundary_agglomeration(3, uv, p, s, threshold=0.05).tolist() == [0, 1, 2]


def test_edge_costs_sign_bias_and_size_weighting():
    c = edge_costs(np.array([0.2, 0.8]), np.array([10.0, 5.0]), beta=0.5)
    assert c[0] > 0 > c[1] and abs(c[0]) == pytest.approx(2 * abs(c[1]))
    assert (edge_costs(np.array([0.5]), beta=0.7) < 0).all()  # beta > 0.5 favours cutting
    with pytest.raises(ValueError, match="beta must be in"):
        edge_costs(np.array([0.5]), beta=1.0)


def _boundaries(labels: np.ndarray, seed: int = 0, noise: float = 0.1) -> np.ndarray:
    """A boundary probability map from instance labels: thick boundaries, blurred, noisy."""
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(seed)
    b = find_boundaries(labels, connectivity=labels.ndim, mode="thick").astype(np.float32)
    b = ndimage.gaussian_filter(b, 1.0)
    b = b / max(b.max(), 1e-6) + noise * rng.normal(size=b.shape)
    return np.clip(b, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def nuclei():
    import h5py

    path = require_data("plantseg", "nuclei_1135_mini.h5")
    with h5py.File(path, "r") as f:
        return f["label"][:].astype(np.int64)


def test_pipeline_on_real_nuclei(nuclei):
    """Boundaries drawn from the real nuclei (thick, blurred, noisy): every method must find
    the nuclei of >= 100 voxels (the thick boundary eats most of the smaller ones) without merges."""
    from cseg_monai.postprocessing import filter_instances

    boundary = _boundaries(nuclei)
    foreground = ndimage.binary_dilation(nuclei > 0, iterations=1)
    truth = filter_instances(nuclei, min_size=100)
    for method in ("multicut", "agglomeration", "watershed"):
        labels = segment_instances(boundary, method=method, sigma_seeds=2.0, min_supervoxel_size=20, min_size=50,
                                   foreground=foreground)  # fmt: skip
        assert labels.dtype == np.uint32 and labels.shape == nuclei.shape
        ids = np.unique(labels)
        assert (ids == np.arange(len(ids))).all()  # consecutive
        scores = instance_scores(truth, labels, thresholds=(0.5,))
        assert scores["f1"][0] >= 0.85 and scores["merges"] == 0, (method, scores)


def test_watershed_and_rag_on_real_cells():
    import h5py

    path = require_data("plantseg", "sample_ovule.h5")
    with h5py.File(path, "r") as f:
        cells = f["label"][:].astype(np.int64)
        spacing = tuple(float(v) for v in f["raw"].attrs["element_size_um"])  # (0.235, 0.15, 0.15) um
    boundary = _boundaries(cells, seed=1)
    seg = watershed_supervoxels(boundary, threshold=0.5, sigma_seeds=1.0, min_size=20, spacing=spacing)
    assert seg.shape == cells.shape and seg.max() >= len(np.unique(cells)) - 1  # over-segments
    rag, uv, mean_b, sizes = region_adjacency(seg, boundary)
    assert uv.shape[1] == 2 and len(uv) == len(mean_b) == len(sizes) and (sizes > 0).all()
    assert ((mean_b >= 0) & (mean_b <= 1)).all()
    # dense cells: the supervoxels over-segment, and partitioning the graph repairs most of it
    f1, arand = {}, {}
    for method in ("watershed", "multicut", "agglomeration"):
        labels = segment_instances(boundary, method=method, sigma_seeds=1.0, min_supervoxel_size=20, spacing=spacing)
        scores = instance_scores(cells, labels, thresholds=(0.5,))
        f1[method], arand[method] = scores["f1"][0], scores["arand"]
    assert f1["multicut"] > 0.7 and f1["multicut"] > f1["watershed"] + 0.2, f1
    assert arand["multicut"] < arand["watershed"] / 2, arand
    assert f1["agglomeration"] > f1["watershed"] + 0.2, f1


def test_masked_watershed_separates_objects_in_background():
    """Two blobs apart, with a rim of boundary only in-plane: the masked watershed must not
    leave one supervoxel of rim pieces, and the graph must not join objects through id 0."""
    lab = np.zeros((4, 40, 80), np.int64)
    lab[:3, 5:35, 5:35], lab[:3, 5:35, 45:75] = 1, 2
    from cseg_monai.transforms import boundary_target

    boundary = boundary_target(lab, in_plane=True).astype(np.float32)
    seg = watershed_supervoxels(boundary, sigma_seeds=1.0, min_size=20, spacing=(1.0, 0.2, 0.2), mask=lab > 0)
    assert (seg[lab == 0] == 0).all() and (seg[lab > 0] > 0).all()
    for s in np.unique(seg)[1:]:
        assert len(np.unique(lab[seg == s])) == 1  # no supervoxel spans both objects
    for method in ("multicut", "agglomeration"):
        labels = segment_instances(boundary, method=method, sigma_seeds=1.0, min_supervoxel_size=20,
                                   spacing=(1.0, 0.2, 0.2), foreground=lab > 0, mask_watershed=True)  # fmt: skip
        assert labels.max() == 2 and instance_scores(lab, labels, thresholds=(0.9,))["f1"][0] == 1.0, method
    assert segment_instances(boundary, foreground=np.zeros(lab.shape, bool), mask_watershed=True).max() == 0
    with pytest.raises(ValueError, match="mask_watershed needs a foreground"):
        segment_instances(boundary, mask_watershed=True)


def test_ground_truth_upper_bound_on_ctc_nuclei():
    """CTC Fluo-N3DH-CHO (5 planes of 1 um, 0.202 um pixels): boundaries from the ground truth
    of training time points. With 3D thick boundaries and an unmasked watershed, post-processing
    alone caps F1@0.5 far below 0.9; in-plane boundaries and the foreground-masked watershed
    recover every nucleus."""
    import tifffile

    path = require_data("ctc_fluo_n3dh_cho", "labels_TZYX.tif")
    from cseg_monai.transforms import boundary_target

    with tifffile.TiffFile(path) as tif:
        lab = tif.series[0].asarray()[3].astype(np.int64)  # a training time point
    spacing, fg = (1.0, 0.202, 0.202), lab > 0
    kw = dict(method="multicut", sigma_seeds=4.0, min_supervoxel_size=1000, min_size=2000, spacing=spacing, foreground=fg)
    old = segment_instances(boundary_target(lab).astype(np.float32), **{**kw, "sigma_seeds": 2.0, "min_supervoxel_size": 50, "min_size": 200})
    assert instance_scores(lab, old, thresholds=(0.5,))["f1"][0] < 0.9
    new = segment_instances(boundary_target(lab, in_plane=True).astype(np.float32), mask_watershed=True, **kw)
    assert instance_scores(lab, new, thresholds=(0.5, 0.75))["f1"] == [1.0, 1.0]


def test_ground_truth_upper_bound_on_plantseg_nuclei():
    """PlantSeg nuclei, validation crop z 70-99: with boundaries taken from the ground truth,
    the unmasked watershed caps F1@0.5 at about 0.82 (cut nuclei at the crop's faces are all
    boundary, so they get no seed and are flooded from a neighbour); the foreground-masked
    watershed keeps them (the bundle's nuclei default)."""
    import h5py
    from skimage.segmentation import relabel_sequential

    from cseg_monai.transforms import boundary_target

    path = require_data("plantseg", "nuclei_1135_mini.h5")
    with h5py.File(path, "r") as f:
        lab = relabel_sequential(f["label"][70:].astype(np.int64))[0]
    kw = dict(method="multicut", sigma_seeds=2.0, min_supervoxel_size=20, min_size=50, foreground=lab > 0)
    boundary = boundary_target(lab).astype(np.float32)
    unmasked = instance_scores(lab, segment_instances(boundary, **kw), thresholds=(0.5,))["f1"][0]
    masked = instance_scores(lab, segment_instances(boundary, mask_watershed=True, **kw), thresholds=(0.5,))["f1"][0]
    assert unmasked < 0.85 and masked > 0.95, (unmasked, masked)


def test_filter_instances_sizes_background_and_relabelling():
    lab = np.zeros((10, 10), np.int64)
    lab[0:2, 0:2] = 7  # 4 voxels
    lab[3:8, 3:8] = 3  # 25 voxels
    lab[9, :] = 12  # 10 voxels, in the background mask
    bg = np.zeros_like(lab, bool)
    bg[9] = True
    out = filter_instances(lab, min_size=5, max_size=30, background=bg)
    assert sorted(np.unique(out).tolist()) == [0, 1] and (out[3:8, 3:8] == 1).all()
    assert filter_instances(lab, max_size=20).max() == 2  # 7 and 12 stay, 3 goes


def test_major_axis_lengths_match_skimage_on_real_nuclei(nuclei):
    """Our one-pass moments against ``regionprops``' ``axis_major_length``, object by object,
    on the 54 real PlantSeg nuclei (3D) and on one plane of them (2D)."""
    from skimage.measure import regionprops

    for lab in (nuclei, nuclei[50]):
        ours = major_axis_lengths(lab)
        props = regionprops(lab)
        assert len(props) >= 10
        for p in props:
            assert ours[p.label] == pytest.approx(p.axis_major_length, rel=1e-6, abs=1e-6), p.label
        absent = np.setdiff1d(np.arange(1, lab.max() + 1), [p.label for p in props])
        assert np.isnan(ours[absent]).all() and np.isnan(ours[0]) == (not (lab == 0).any())


def test_major_axis_lengths_honour_anisotropic_spacing():
    lab = np.zeros((30, 12, 12), np.int64)
    lab[2:27, 4:7, 4:7] = 1  # 25 planes along z, 3 x 3 across
    lab[6, 1:11, 9] = 2  # a 10-voxel line along y in one plane, apart from object 1
    for dz in (1.0, 4.0):
        got = major_axis_lengths(lab, spacing=(dz, 1.0, 1.0))
        # a bar of n voxels at step h along one axis: variance h^2 (n^2 - 1) / 12, length 2 sqrt(5 var)
        assert got[1] == pytest.approx(2 * np.sqrt(5 * dz**2 * (25**2 - 1) / 12), rel=1e-9)
        assert got[2] == pytest.approx(2 * np.sqrt(5 * (10**2 - 1) / 12), rel=1e-9)  # across z: unchanged
    with pytest.raises(ValueError, match="spacing must be 3 positive numbers"):
        major_axis_lengths(lab, spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="integer instance ids"):
        major_axis_lengths(lab.astype(np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        major_axis_lengths(-lab)


def test_filter_instances_by_major_axis_length():
    lab = np.zeros((6, 40, 40), np.int64)
    lab[1:5, 2:8, 2:8] = 5  # compact blob, about 8 long
    lab[2:4, 20:22, 1:39] = 9  # a 38-voxel rod, about 44 long
    lab[1:5, 30:36, 30:36] = 2  # another blob
    long_axis = major_axis_lengths(lab)
    assert long_axis[5] < 10 < 40 < long_axis[9]
    out = filter_instances(lab, max_major_axis=20.0)
    assert np.unique(out).tolist() == [0, 1, 2] and (out[lab == 9] == 0).all() and (out[lab == 5] > 0).all()
    out = filter_instances(lab, min_major_axis=20.0)
    assert np.unique(out).tolist() == [0, 1] and (out[lab == 9] == 1).all()
    # in physical units: with 5x thicker planes the blobs are 5x longer along z and fail a 20 limit too
    assert filter_instances(lab, max_major_axis=20.0, spacing=(5.0, 1.0, 1.0)).max() == 0
    # the size filter runs first, on the same call
    assert filter_instances(lab, min_size=200, max_major_axis=20.0).max() == 0
    with pytest.raises(ValueError, match="max_major_axis \\(5.0\\) must be >= min_major_axis \\(10.0\\)"):
        filter_instances(lab, min_major_axis=10.0, max_major_axis=5.0)
    with pytest.raises(ValueError, match="min_size must be a number >= 0, got -1"):
        check_filter_limits(min_size=-1)
    with pytest.raises(ValueError, match="max_major_axis must be a number >= 0, got 'long'"):
        check_filter_limits(max_major_axis="long")


def test_segment_instances_major_axis_filter_on_real_nuclei(nuclei):
    """Boundaries from the real nuclei: a max major axis below the largest nuclei removes
    exactly those, in physical units (PlantSeg's spacing is not needed: isotropic here)."""
    boundary = _boundaries(nuclei)
    foreground = ndimage.binary_dilation(nuclei > 0, iterations=1)
    kw = dict(method="multicut", sigma_seeds=2.0, min_supervoxel_size=20, min_size=50, foreground=foreground)
    full = segment_instances(boundary, **kw)
    lengths = major_axis_lengths(full)[1:]
    limit = float(np.median(lengths))
    cut = segment_instances(boundary, max_major_axis=limit, **kw)
    assert cut.max() == int((lengths <= limit).sum()) < full.max()
    assert np.nanmax(major_axis_lengths(cut)[1:]) <= limit


def test_bad_inputs():
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        segment_instances(np.full((8, 8), 2.0, np.float32))
    with pytest.raises(ValueError, match="floating point"):
        segment_instances(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        segment_instances(np.full((8, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="InstanceParams.method must be one of .*, got 'mc'"):
        segment_instances(np.zeros((8, 8), np.float32), method="mc")
    with pytest.raises(ValueError, match="spacing must be 2 positive numbers"):
        watershed_supervoxels(np.zeros((8, 8), np.float32), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="edge ids must lie in"):
        multicut(2, np.array([[0, 2]]), np.array([1.0]))
    with pytest.raises(ValueError, match="unknown multicut solver"):
        multicut(2, np.array([[0, 1]]), np.array([1.0]), solver="ilp")


def test_edge_slivers_on_a_cropped_real_reference():
    """Crop the CTC reference (time point 0) off-centre: the nuclei the crop cuts to less than
    the fraction of the median uncut nucleus are exactly the ones removed; uncut ones and cut
    ones still large stay, and 0 removes nothing."""
    from cseg_monai.data.datasets.instances import datalist, load_item

    require_data("ctc_fluo_n3dh_cho", "labels_TZYX.tif")
    item = [i for i in datalist("ctc_cho", data_root(), "all") if i["t"] == 0][0]
    _, truth, _ = load_item(item)
    lab = np.asarray(truth).reshape(np.asarray(truth).shape[-3:])[:, 60:400, 60:450].astype(np.int64)
    ids, counts = np.unique(lab, return_counts=True)
    counts, ids = counts[ids > 0], ids[ids > 0]
    edge = set(np.unique(np.concatenate([lab[:, 0].ravel(), lab[:, -1].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]))) - {0}
    inner = np.array([c for i, c in zip(ids, counts) if i not in edge])
    assert len(edge) >= 3 and len(inner) >= 3, "the crop must cut some nuclei and keep some whole"
    for fraction in (0.3, 0.8):
        expected = sorted(int(i) for i, c in zip(ids, counts) if i in edge and c < fraction * np.median(inner))
        assert edge_slivers(lab, fraction).tolist() == expected
    assert 0 < len(edge_slivers(lab, 0.8)) < len(edge), "0.8 must remove some cut nuclei and keep others"
    out = filter_instances(lab, edge_min_fraction=0.8)
    assert out.max() == len(ids) - len(edge_slivers(lab, 0.8))
    assert (out[np.isin(lab, edge_slivers(lab, 0.8))] == 0).all()
    assert filter_instances(lab, edge_min_fraction=0.0).max() == len(ids)


def test_edge_slivers_small_cases_and_bad_fraction():
    lab = np.zeros((12, 12), np.int64)
    lab[3:7, 3:7] = 1
    lab[0:2, 8:12] = 2  # 8 voxels on the top edge
    lab[8:12, 0:4] = 3  # 16 voxels, cut by two edges
    assert edge_slivers(lab, 0.6).tolist() == [2]
    assert edge_slivers(lab, 0.0).tolist() == []
    assert edge_slivers(np.where(lab == 1, 0, lab), 0.9).tolist() == [], "no uncut object: no typical size, nothing removed"
    assert segment_instances(np.zeros((12, 12)), foreground=lab > 0, mask_watershed=True, edge_min_fraction=0.6).max() == 2
    for bad in (1.0, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="edge fraction must be a number in \\[0, 1\\)"):
            edge_slivers(lab, bad)
