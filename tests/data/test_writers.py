"""Atomic writes (an interrupted write never replaces or half-writes the final file) and output names."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cseg_monai.data.writers import atomic_path, output_stem, write_tiff


def test_interrupted_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.tif"
    write_tiff(target, np.ones((2, 3), np.uint8))
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("interrupted")
    np.testing.assert_array_equal(tifffile.imread(target), np.ones((2, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_write_tiff_roundtrip_and_refusals(tmp_path):
    arr = np.random.default_rng(0).random((2, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(tifffile.imread(write_tiff(tmp_path / "sub" / "a.tif", arr)), arr)
    with pytest.raises(ValueError, match="empty"):
        write_tiff(tmp_path / "e.tif", np.zeros((0, 3)))
    with pytest.raises(ValueError, match=".tif/.tiff"):
        write_tiff(tmp_path / "a.png", arr)


def test_written_files_get_umask_permissions_not_mkstemp_0600(tmp_path):
    import os

    import numpy as np

    from cseg_monai.data.writers import write_tiff

    path = write_tiff(tmp_path / "a.tif", np.zeros((4, 4), np.uint8))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_output_stem():
    assert output_stem("/a/b/slice_07.png") == "slice_07"
    assert output_stem("vol.nii.gz") == "vol"
    assert output_stem("c.ome.tif") == "c"
    assert output_stem("d.h5::volumes/raw") == "d"
