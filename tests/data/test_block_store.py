"""The OME-Zarr output: resumes with the same arguments, refuses other ones, never loses a finished output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from cseg_monai.data.block_store import BlockStore, OutputExistsError, fingerprint
from cseg_monai.data.lazy_volumes import open_volume

CORE = ((0, 2), (0, 8), (0, 8))


def _store(path, **kw):
    options = {"chunks": (2, 8, 8), "spacing": (0.5, 0.1, 0.1), "spacing_unit": "um", "arguments": {"weights": "a"}}
    options.update(kw)
    return BlockStore.create(path, (2, 4, 8, 8), **options)


def test_layout_is_ome_zarr_with_the_voxel_size(tmp_path):
    out = tmp_path / "v.ome.zarr"
    store = _store(out, prob_dtype="float16")
    prob = np.random.default_rng(0).random((2, 2, 8, 8)).astype(np.float32)
    store.write(CORE, prob, np.full((2, 8, 8), 3, np.uint8))
    store.mark_done("0_0_0")
    assert not out.exists()  # written beside it until complete
    assert store.finish() == str(out) and not (tmp_path / "v.ome.zarr.partial").exists()
    root = zarr.open_group(out, mode="r")
    ms = root.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"] and ms["axes"][1]["unit"] == "micrometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.5, 0.1, 0.1]
    assert root["0"].dtype == np.float16 and np.allclose(root["0"][:, :2], prob, atol=1e-3)
    assert root["labels"].attrs["labels"] == ["segmentation"] and "image-label" in root["labels/segmentation"].attrs
    assert root["labels/segmentation/0"][1, 0, 0] == 3 and root["labels/segmentation/0"][3, 0, 0] == 0
    assert root.attrs["cseg_inference"]["complete"] is True
    assert not (out / ".cseg_blocks_done").exists()
    labels = open_volume(f"{out}::labels/segmentation")  # our labels read back as a volume, with the spacing
    assert labels.shape == (4, 8, 8) and labels.spacing == (0.5, 0.1, 0.1) and labels[1:2, :1, :1].item() == 3


def test_resume_refuse_and_overwrite(tmp_path):
    out = tmp_path / "v.ome.zarr"
    store = _store(out)
    store.write(CORE, np.ones((2, 2, 8, 8), np.float32))
    store.mark_done("0_0_0")
    resumed = _store(out)  # same arguments: the partial store is resumed
    assert resumed.path == store.path and resumed.done_blocks() == {"0_0_0"} and resumed.is_done("0_0_0")
    assert zarr.open_group(resumed.path)["0"][0, 0, 0, 0] == 255
    with pytest.raises(OutputExistsError, match="unfinished run with other arguments"):
        _store(out, arguments={"weights": "b"})
    resumed.finish()
    again = _store(out)
    assert again.complete and again.is_done("any")  # finished with the same arguments: nothing to do
    with pytest.raises(OutputExistsError, match="other arguments"):
        _store(out, prob_dtype="float32")
    replacing = _store(out, arguments={"weights": "b"}, overwrite=True)
    assert replacing.path.endswith(".partial")
    assert json.loads((out / ".zattrs").read_text())["cseg_inference"]["arguments"] == {"weights": "a"}  # old output intact meanwhile
    replacing.finish()
    assert json.loads((out / ".zattrs").read_text())["cseg_inference"]["arguments"] == {"weights": "b"}


def test_a_foreign_folder_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "mine.ome.zarr"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="not an output of this tool"):
        _store(out)
    with pytest.raises(ValueError, match="chunks"):
        BlockStore.create(tmp_path / "x.ome.zarr", (1, 4, 8, 8), chunks=(2, 8))
    with pytest.raises(ValueError, match="prob_dtype"):
        BlockStore.create(tmp_path / "x.ome.zarr", (1, 4, 8, 8), chunks=(2, 8, 8), prob_dtype="int7")
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_a_run_that_stopped_inside_finish_is_promoted_not_recomputed(tmp_path):
    out = tmp_path / "v.ome.zarr"
    store = _store(out)
    store.write(CORE, np.ones((2, 2, 8, 8), np.float32))
    store.mark_done("0_0_0")
    store.work_array("raw", (4, 8, 8), (2, 8, 8), "uint64")
    root = zarr.open_group(store.path, mode="r+", zarr_format=2)
    root.attrs["cseg_inference"] = {**root.attrs["cseg_inference"], "complete": True}  # finish() marked it, then the run died
    again = _store(out)
    assert again.complete and out.is_dir() and not (tmp_path / "v.ome.zarr.partial").exists()
    assert not (out / ".cseg_work").exists() and not (out / ".cseg_blocks_done").exists()
    assert zarr.open_group(out)["0"][0, 0, 0, 0] == 255
