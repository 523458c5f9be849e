"""BoundaryToInstancesd: real nuclei -> targets -> instances, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cseg_monai.data.datasets import instances
from cseg_monai.metrics.instances import InstanceScoresMetric
from cseg_monai.postprocessing import BoundaryToInstancesd
from cseg_monai.transforms import InstanceTargetsd, LoadInstancesd

from conftest import data_root, require_data


def test_load_real_nuclei_targets_and_back_to_instances():
    """Real nuclei -> targets (boundary, foreground, weight with the file's spacing) -> treating the
    targets as a perfect prediction -> instances that match the nuclei."""
    require_data("plantseg")
    (item,) = instances.datalist("plantseg_nuclei", data_root(), "val")
    d = LoadInstancesd()(item)
    assert tuple(d["image"].shape) == (1, 30, 100, 100) and d["image"].dtype == torch.float32
    assert d["label"].dtype == torch.int64 and d["spacing"] == pytest.approx([0.28371837, 0.12678642, 0.12678642])
    d = InstanceTargetsd("label", foreground_key="foreground", sigma=1.0)(d)
    prob = np.concatenate([d["boundary"], d["foreground"]]).astype(np.float32)
    prob[0] = np.clip(prob[0] * 0.9 + 0.05, 0, 1)
    out = BoundaryToInstancesd("pred", foreground_channel=1, sigma_seeds=1.0, min_supervoxel_size=10, min_size=30)(
        {"pred": prob, "spacing": d["spacing"]}
    )
    metric = InstanceScoresMetric(score="f1", iou=0.5)
    truth = d["label"].numpy()
    big = np.isin(truth, [i for i, n in zip(*np.unique(truth, return_counts=True)) if i and n >= 100])
    metric.update(([out["instances"]], [np.where(big, truth, 0)]))
    # 14 nuclei of >= 100 voxels in this crop; one merge of two touching nuclei costs 3 points
    assert metric.compute() >= 0.75
    assert metric.items[0]["splits"] == 0 and metric.items[0]["merges"] <= 1


def test_boundary_to_instances_bad_input():
    with pytest.raises(ValueError, match="channel-first \\(C, Z, Y, X\\)"):
        BoundaryToInstancesd("pred")({"pred": np.zeros((8, 8), np.float32)})
    with pytest.raises(ValueError, match="InstanceParams.method must be one of .*, got 'gasp'"):
        BoundaryToInstancesd("pred", method="gasp")
    with pytest.raises(ValueError, match="mask_watershed needs a foreground_channel"):
        BoundaryToInstancesd("pred", mask_watershed=True)
