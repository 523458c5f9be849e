"""One way to launch a bundle: resolving it, its config files, in-process and as a command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cseg_monai.workflows import bundle_command, bundle_workflow, config_files, resolve_bundle, run_bundle

from conftest import BUNDLES

NAME = "isbi2012_em_membrane_segmentation"


def test_resolve_by_name_or_folder(tmp_path):
    assert resolve_bundle(NAME) == BUNDLES / NAME
    assert resolve_bundle(BUNDLES / NAME) == (BUNDLES / NAME).resolve()
    with pytest.raises(ValueError, match="unknown bundle 'nope'.*isbi2012"):
        resolve_bundle("nope")
    with pytest.raises(FileNotFoundError, match="configs/missing.json is missing"):
        config_files(BUNDLES / NAME, ["missing.json"])
    with pytest.raises(ValueError, match="non-empty list"):
        config_files(BUNDLES / NAME, "train.json")


def test_in_process_inference_on_the_sample(tmp_path):
    run_bundle(NAME, ["inference.json"], "infer", output_dir=str(tmp_path), progress_bar=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantom_2024_labels.tif", "phantom_2024_prob.tif", "run_summary.json"]
    wf = bundle_workflow(NAME, ["train.json", "evaluate.json"], "eval", logging_file=False)
    wf.initialize()
    assert wf.parser.get_parsed_content("bundle_root") == str(BUNDLES / NAME)  # set by the launcher
    with pytest.raises(ValueError, match="workflow_type"):
        bundle_workflow(NAME, ["inference.json"], "predict")


def test_command_line_equals_what_monai_runs(tmp_path):
    cmd = bundle_command(NAME, ["inference.json"], output_dir=str(tmp_path), progress_bar=False)
    assert cmd[:4] == [sys.executable, "-m", "monai.bundle", "run"] and cmd[-2:] == ["--progress_bar", "false"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "phantom_2024_labels.tif").is_file()
    two = bundle_command(NAME, ["train.json", "evaluate.json"], "evaluating", extra_args=["--max_epochs", "1"])
    assert two[6].startswith("['") and two[6].endswith("evaluate.json']") and two[-2:] == ["--max_epochs", "1"]
