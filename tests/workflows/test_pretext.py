"""The pretext report: per-file errors against the no-network baseline, pictures, bad files skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from cseg_monai.data.datasets.unlabelled import datalist, load_pool_item
from cseg_monai.transforms import MaskCentreRegiond
from cseg_monai.workflows import FolderRunError, baseline_prediction, pretext_report


class RingMean(nn.Module):
    """Predicts every voxel of the masked 3 x 3 centre as the mean of the 16 voxels around it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1] // 2
        window = x[:, :, c - 2 : c + 3, c - 2 : c + 3]
        ring = (window.sum(dim=(-1, -2)) - x[:, :, c - 1 : c + 2, c - 1 : c + 2].sum(dim=(-1, -2))) / 16.0
        return ring[:, :, None, None].repeat(1, 9, 1, 1)


def test_baseline_by_hand():
    patch = np.zeros((1, 7, 7), np.float32)
    patch[0, 1:6, 1:6] = 2.0  # the shell around the 3 x 3 centre is all 2
    assert baseline_prediction(patch, (9, 1, 1), 1).tolist() == [[[2.0]]] * 9
    assert float(baseline_prediction(patch, (1, 7, 7), None).mean()) == pytest.approx(patch.mean())


def test_report_matches_the_baseline_for_a_baseline_network_and_skips_a_bad_file(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        tifffile.imwrite(tmp_path / f"img{i}.tif", (rng.random((40, 50)) * 255).astype(np.uint8))
    (tmp_path / "bad.tif").write_bytes(b"broken")
    out = tmp_path / "out"
    with pytest.raises(FolderRunError, match="bad.tif"):
        pretext_report(RingMean(), datalist("folder", tmp_path, 2), out, (11, 11), MaskCentreRegiond("image", radius=1), load_pool_item, progress=False)
    scores = json.loads((out / "pretext_scores.json").read_text())
    assert len(scores) == 2
    for row in scores.values():
        assert row["mse"] == pytest.approx(row["baseline_mse"], rel=1e-4) and row["n_patches"] == 4 * 5  # 40 x 50 in 11 x 11 tiles
        assert (out / row["picture"]).is_file()
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["n_failed"] == 1 and summary["n_files"] == 3
