"""TraceSectionsd and SaveTracksd: probabilities to traced ids and a tracks file, anchors by file, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from monai.data import MetaTensor

from cseg_monai.data.tube_phantom import make_tube_phantom
from cseg_monai.metrics.tracing import tracing_scores
from cseg_monai.postprocessing import LinkParams, SaveTracksd, TraceSectionsd


def _prob(truth: np.ndarray) -> np.ndarray:
    """What a good network gives: high inside the profiles, low on their borders and outside."""
    from cseg_monai.data.datasets.axon_sections import interior_target

    rng = np.random.default_rng(0)
    return np.clip(interior_target(truth) * 0.85 + rng.normal(0.05, 0.05, truth.shape), 0, 1).astype(np.float32)[None]


def test_a_good_probability_map_is_traced_through_a_blank_section():
    _, truth = make_tube_phantom((16, 128, 128), n_tubes=8, seed=5, missing_sections=(7,))
    out = TraceSectionsd("pred", erode=1.0, min_area=8.0)({"pred": MetaTensor(_prob(truth), meta={"filename_or_obj": "v.tif"})})
    traced = out["traced"]
    assert traced.shape == (1,) + truth.shape and traced.meta["filename_or_obj"] == "v.tif"
    scores = tracing_scores(truth.astype(np.int64), traced[0].numpy())
    assert scores["link_f1"] >= 0.95 and scores["merges"] == 0, scores
    assert {row["id"] for row in out["traced_tracks"]} == set(np.unique(traced[traced > 0].numpy()).tolist())


def test_anchors_are_read_per_volume(tmp_path):
    prob = np.zeros((1, 3, 32, 32), np.float32)
    prob[0, :, 8:20, 8:20] = 0.9
    (tmp_path / "vol_anchors.csv").write_text("section,y,x,id\n1,14,14,42\n")
    t = TraceSectionsd("pred", anchors_dir=tmp_path, link=LinkParams(min_area=0))
    out = t({"pred": prob, "image": "/data/vol.tif"})
    assert int(out["traced"].max()) == 42  # the anchored id names the whole track
    other = t({"pred": prob, "image": "/data/other.tif"})  # no file: no anchors
    assert int(other["traced"].max()) == 1
    with pytest.raises(ValueError, match="file name"):
        t({"pred": prob})
    (tmp_path / "bad_anchors.csv").write_text("section,y,x,id\n7,14,14,42\n")  # a section the stack lacks
    with pytest.raises(ValueError, match="bad_anchors.csv: anchor .* section outside"):
        t({"pred": prob, "image": "/data/bad.tif"})


def test_tracks_file_and_bad_input(tmp_path):
    prob = np.zeros((1, 2, 16, 16), np.float32)
    prob[0, :, 4:10, 4:10] = 0.9
    out = TraceSectionsd("pred")({"pred": prob})
    SaveTracksd("traced_tracks", tmp_path)({**out, "image": "/d/stack.ome.tif"})
    lines = (tmp_path / "stack_tracks.csv").read_text().splitlines()
    assert lines[0].startswith("id,section") and len(lines) == 3
    with pytest.raises(ValueError, match=r"\(1, Z, Y, X\)"):
        TraceSectionsd("pred")({"pred": prob[0]})
    with pytest.raises(ValueError, match="threshold"):
        TraceSectionsd("pred", threshold=1.0)
    with pytest.raises(ValueError, match="unknown LinkParams"):
        TraceSectionsd("pred", gate=3)
