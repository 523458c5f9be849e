"""``cseg trace``: per-section label stacks of users' tools in, 3D ids and tracks out; bad files skipped."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cseg_monai.data.tube_phantom import make_tube_phantom
from cseg_monai.metrics.tracing import section_profiles_of, tracing_scores
from cseg_monai.workflows.folder_run import FolderRunError
from cseg_monai.workflows.tracing import load_profiles, trace_files


@pytest.fixture(scope="module")
def stack():
    _, truth = make_tube_phantom((24, 128, 128), n_tubes=8, seed=4, missing_sections=(10,))
    return truth, section_profiles_of(truth).astype(np.uint16)


def test_a_fiji_stack_and_a_folder_with_a_bad_file(stack, tmp_path):
    truth, profiles = stack
    (tmp_path / "in").mkdir()
    fiji = {"imagej": True, "resolution": (1 / 0.01, 1 / 0.01), "metadata": {"spacing": 0.05, "unit": "um", "axes": "ZYX"}}
    tifffile.imwrite(tmp_path / "in" / "fiji.tif", profiles, **fiji)
    tifffile.imwrite(tmp_path / "in" / "plain.tif", profiles, photometric="minisblack")
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    with pytest.raises(FolderRunError, match="broken.tif"):
        trace_files(tmp_path / "in", tmp_path / "out", progress=False)
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert sorted(Path(s["file"]).name for s in summary["succeeded"]) == ["fiji.tif", "plain.tif"]
    ids, spacing = load_profiles(tmp_path / "out" / "fiji_labels.tif")
    assert spacing == pytest.approx((0.05, 0.01, 0.01))  # the voxel size goes through, in the input's unit
    with tifffile.TiffFile(tmp_path / "out" / "fiji_labels.tif") as tif:
        assert tif.imagej_metadata["unit"] == "um"  # the input's unit, not an assumed one
    assert tracing_scores(truth.astype(np.int64), ids)["link_f1"] >= 0.95
    assert np.array_equal(ids, tifffile.imread(tmp_path / "out" / "plain_labels.tif").astype(np.int64))
    with open(tmp_path / "out" / "fiji_tracks.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(np.unique(profiles[z][profiles[z] > 0])) for z in range(profiles.shape[0]))  # one row per profile
    assert {int(r["id"]) for r in rows} == set(np.unique(ids[ids > 0]).tolist())


def test_the_command_line_with_anchors_and_the_greedy_baseline(stack, tmp_path):
    truth, profiles = stack
    tifffile.imwrite(tmp_path / "p.tif", profiles, photometric="minisblack")
    z0 = np.argwhere(truth[0] > 0)[0]
    (tmp_path / "anchors.csv").write_text(f"section,y,x,id\n0,{z0[0]},{z0[1]},500\n")
    cseg = Path(sys.executable).with_name("cseg")
    proc = subprocess.run([str(cseg), "trace", str(tmp_path / "p.tif"), str(tmp_path / "out"), "--anchors", str(tmp_path / "anchors.csv")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ids = tifffile.imread(tmp_path / "out" / "p_labels.tif")
    assert ids[0, z0[0], z0[1]] == 500
    greedy = subprocess.run([str(cseg), "trace", str(tmp_path / "p.tif"), str(tmp_path / "g"), "--method", "greedy"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert greedy.returncode == 0, greedy.stderr
    assert not (tmp_path / "g" / "p_tracks.csv").exists() and (tmp_path / "g" / "p_labels.tif").is_file()
    bad = subprocess.run([str(cseg), "trace", str(tmp_path / "nope.tif"), str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nope.tif" in bad.stderr


def test_bad_inputs_name_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="flat.tif.*Z, Y, X"):
        load_profiles(tmp_path / "flat.tif")
    tifffile.imwrite(tmp_path / "float.tif", np.full((2, 8, 8), 0.5, np.float32), photometric="minisblack")
    with pytest.raises(ValueError, match="float.tif.*whole numbers"):
        load_profiles(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="method"):
        trace_files(tmp_path / "float.tif", tmp_path / "o", method="magic")


def test_the_tracing_study_runs_in_parts_and_draws_its_picture(tmp_path):
    """scripts/experiments/axon_tracing.py on one phantom: a record per method, written as it goes; a rerun skips them."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "experiments" / "axon_tracing.py"
    cmd = [sys.executable, str(script), "--sets", "phantom_gaps", "--methods", "greedy", "hungarian", "--json", str(tmp_path / "r.json"),
           "--picture", str(tmp_path / "p.png")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads((tmp_path / "r.json").read_text())["records"]
    assert sorted(records) == ["phantom_gaps/greedy", "phantom_gaps/hungarian"]
    ours, greedy = records["phantom_gaps/hungarian"], records["phantom_gaps/greedy"]
    assert ours["link_f1"] >= 0.95 and ours["arand"] < greedy["arand"]  # greedy stitching breaks every tube at the blank sections
    assert (tmp_path / "p.png").stat().st_size > 1000
    again = subprocess.run(cmd[:-2], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "phantom_gaps/" not in again.stdout
