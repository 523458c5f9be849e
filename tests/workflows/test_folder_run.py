"""A folder run: a failing file is reported and skipped, the others are written, the exit status says so."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import tifffile
from PIL import Image

from cseg_monai.workflows import FileReport, FolderRunError, bundle_command, bundle_workflow

from conftest import BUNDLES

ISBI = BUNDLES / "isbi2012_em_membrane_segmentation"


def test_file_report_records_and_raises_at_the_end(tmp_path):
    report = FileReport(tmp_path, total=3, progress=False)
    with report.item("a.tif"):
        pass
    with report.item("b.tif"):
        raise ValueError("b.tif: volume is empty")
    with report.item("c.tif"):
        raise OSError("disk gone")
    with pytest.raises(FolderRunError) as err:
        report.finish()
    message = str(err.value)
    assert message.startswith("2 of 3 file(s) failed (the others were written; see ")
    assert "b.tif: volume is empty" in message and "c.tif: OSError: disk gone" in message
    summary = json.loads((tmp_path / "run_summary.json").read_text())
    assert summary["n_files"] == 3 and [f["file"] for f in summary["failed"]] == ["b.tif", "c.tif"]
    assert [s["file"] for s in summary["succeeded"]] == ["a.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_summary.json"]  # no temporary file left
    ok = FileReport(tmp_path / "ok", progress=False)
    with ok.item("a.tif"):
        pass
    assert ok.finish()["n_failed"] == 0


@pytest.fixture
def mixed_folder(phantom_isbi, tmp_path):
    """A PNG, a corrupt TIFF and a TIFF, as a user's folder might hold them."""
    folder = tmp_path / "in"
    folder.mkdir()
    images = sorted((phantom_isbi / "test" / "image").iterdir())
    shutil.copy(images[0], folder / f"a{images[0].suffix}")
    (folder / "broken.tif").write_bytes(b"II*\x00 this is no TIFF")
    tifffile.imwrite(folder / "c.tif", np.asarray(Image.open(images[1])))
    return folder


def test_membrane_inference_skips_a_corrupt_file_and_keeps_old_outputs(mixed_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "broken_prob.tif").write_bytes(b"an earlier result")  # never destroyed by the failing file
    wf = bundle_workflow(ISBI, ["inference.json"], "infer", dataset_dir=str(mixed_folder), output_dir=str(out), progress_bar=False)
    wf.initialize()
    with pytest.raises(Exception) as err:
        wf.run()
    chain = repr(err.value) + "".join(repr(e) for e in _chain(err.value))
    assert "1 of 3 file(s) failed" in chain and "broken.tif" in chain
    assert (out / "a_prob.tif").is_file() and (out / "c_labels.tif").is_file()
    assert (out / "broken_prob.tif").read_bytes() == b"an earlier result"
    summary = json.loads((out / "run_summary.json").read_text())
    assert [f["file"] for f in summary["failed"]] == [str(mixed_folder / "broken.tif")]
    assert summary["failed"][0]["error"].startswith(f"{mixed_folder / 'broken.tif'}: corrupt or not a TIFF file")
    assert len(summary["succeeded"]) == 2


def _chain(err):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def test_the_command_line_exit_status_says_a_file_failed(mixed_folder, tmp_path):
    cmd = bundle_command(ISBI, ["inference.json"], "run", dataset_dir=str(mixed_folder), output_dir=str(tmp_path / "out"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "1 of 3 file(s) failed" in proc.stderr and "broken.tif" in proc.stderr
    assert (tmp_path / "out" / "a_labels.tif").is_file() and (tmp_path / "out" / "c_labels.tif").is_file()
