"""Lazy volumes read only the boxes asked for, from every container a user has, with the voxel size."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from cseg_monai.data import ImageReadError
from cseg_monai.data.lazy_volumes import LazyVolume, open_volume

from conftest import require_data

VOLUME = np.random.default_rng(0).integers(0, 65535, (7, 33, 41)).astype(np.uint16)
BOX = (slice(2, 5), slice(3, 20), slice(1, 40))


def _check(vol: LazyVolume) -> None:
    assert vol.shape == VOLUME.shape and vol.dtype == VOLUME.dtype
    assert np.array_equal(vol[BOX], VOLUME[BOX])
    assert np.array_equal(vol.to_dask().compute(), VOLUME)
    again = pickle.loads(pickle.dumps(vol))  # what a Dask worker gets: no open handle travels
    assert again._handle is None and np.array_equal(again[BOX], VOLUME[BOX])


@pytest.mark.parametrize(
    "options",
    [
        {"imagej": True, "metadata": {"axes": "ZYX", "spacing": 0.3, "unit": "um"}, "resolution": (4.0, 4.0)},  # as Fiji saves
        {"photometric": "minisblack", "compression": "zlib", "tile": (16, 16)},  # compressed, tiled pages
    ],
)
def test_tiff_is_read_page_by_page(tmp_path, options):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, VOLUME, **options)
    vol = open_volume(path)
    _check(vol)
    assert vol.kind == "tiff" and vol.chunks == (1, 33, 41)
    if options.get("imagej"):
        assert vol.spacing == (0.3, 0.25, 0.25) and vol.spacing_unit == "um"


def test_hdf5_and_zarr_with_their_spacing(tmp_path):
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=VOLUME, chunks=(1, 16, 16))
        f["raw"].attrs["element_size_um"] = [0.5, 0.1, 0.1]
        f["other"] = np.zeros(3)
    vol = open_volume(f"{tmp_path / 'v.h5'}::raw")
    _check(vol)
    assert vol.spacing == (0.5, 0.1, 0.1) and vol.chunks == (1, 16, 16)
    with pytest.raises(ImageReadError, match="name one"):
        open_volume(tmp_path / "v.h5")
    z = zarr.open_array(tmp_path / "v.zarr", mode="w", shape=VOLUME.shape, chunks=(2, 16, 16), dtype=VOLUME.dtype)
    z[:] = VOLUME
    z.attrs["resolution"] = [1.0, 2.0, 3.0]
    _check(open_volume(tmp_path / "v.zarr"))
    assert open_volume(tmp_path / "v.zarr").spacing == (1.0, 2.0, 3.0)


def test_n5_box_by_box_with_its_resolution(tmp_path):
    import tensorstore as ts

    spec = {"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "v.n5" / "em" / "raw")}, "create": True,
            "metadata": {"dimensions": list(VOLUME.shape[::-1]), "blockSize": [16, 16, 2], "dataType": "uint16",
                         "compression": {"type": "gzip"}, "pixelResolution": {"dimensions": [8.0, 8.0, 30.0], "unit": "nm"}}}  # fmt: skip
    ts.open(spec).result().T.write(VOLUME).result()
    vol = open_volume(f"{tmp_path / 'v.n5'}::em/raw")
    assert vol.kind == "n5" and vol.chunks == (2, 16, 16)
    assert vol.spacing == (30.0, 8.0, 8.0) and vol.spacing_unit == "nm"
    _check(vol)


def test_ome_zarr_level_0_with_its_scale_and_a_channel_axis_of_one(tmp_path):
    root = zarr.open_group(tmp_path / "img.ome.zarr", mode="w", zarr_format=2)
    root.create_array("0", shape=(1,) + VOLUME.shape, chunks=(1, 4, 16, 16), dtype=VOLUME.dtype)[:] = VOLUME[None]
    root.create_array("1", shape=(1, 7, 16, 20), dtype=VOLUME.dtype)
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    datasets = [{"path": p, "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.4, 0.1 * s, 0.1 * s]}]} for p, s in (("0", 1), ("1", 2))]
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    vol = open_volume(tmp_path / "img.ome.zarr")
    _check(vol)
    assert vol.spacing == (0.4, 0.1, 0.1) and vol.spacing_unit == "um" and vol.squeeze == (0,)
    two = zarr.open_group(tmp_path / "two.ome.zarr", mode="w", zarr_format=2)
    two.create_array("0", shape=(2,) + VOLUME.shape, dtype=VOLUME.dtype)
    two.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets[:1]}]
    with pytest.raises(ImageReadError, match="non-spatial axis longer than 1"):
        open_volume(tmp_path / "two.ome.zarr")


def test_a_folder_of_slices_is_one_stack(tmp_path):
    for z in range(VOLUME.shape[0]):
        tifffile.imwrite(tmp_path / f"s{z}.tif", VOLUME[z])
    vol = open_volume(tmp_path)
    assert vol.kind == "slices"
    _check(vol)


def test_real_isbi_slices_as_a_stack():
    folder = require_data("isbi2012", "test", "image")
    vol = open_volume(folder)
    assert vol.shape == (30, 512, 512) and vol.dtype == np.uint8
    assert np.array_equal(vol[10:12, 100:150, :], np.stack([np.asarray(Image.open(folder / f"{z}.png")) for z in (10, 11)])[:, 100:150])


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        open_volume(tmp_path / "missing.zarr")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 no tiff")
    with pytest.raises(ImageReadError, match="broken.tif"):
        open_volume(tmp_path / "broken.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(ImageReadError, match="rgb.tif.*channels"):
        open_volume(tmp_path / "rgb.tif")
    zarr.open_array(tmp_path / "4d.zarr", mode="w", shape=(2, 2, 4, 4), dtype="u1")
    with pytest.raises(ImageReadError, match="4d.zarr.*grey"):
        open_volume(tmp_path / "4d.zarr")
    (tmp_path / "a.nii").write_bytes(b"")
    with pytest.raises(ValueError, match="box by box"):
        open_volume(tmp_path / "a.nii")
    tifffile.imwrite(tmp_path / "s.tif", VOLUME)
    vol = open_volume(tmp_path / "s.tif")
    with pytest.raises(IndexError, match="one slice of step 1"):
        vol[::2]
    (tmp_path / "s.tif").write_bytes((tmp_path / "s.tif").read_bytes()[:3000])  # truncated after opening
    with pytest.raises(ImageReadError, match="s.tif"):
        pickle.loads(pickle.dumps(vol))[6:7]


def test_the_token_of_a_directory_store_sees_a_chunk_rewritten_in_place(tmp_path):
    """A resumed out-of-core run must not reuse blocks of an input whose chunks were rewritten."""
    z = zarr.open_array(tmp_path / "v.zarr", mode="w", shape=VOLUME.shape, chunks=(2, 16, 16), dtype=VOLUME.dtype)
    z[:] = VOLUME
    before = open_volume(tmp_path / "v.zarr").token()
    assert open_volume(tmp_path / "v.zarr").token() == before  # stable when nothing changed
    top_mtime = (tmp_path / "v.zarr").stat().st_mtime_ns
    z[4:6, :16, :16] = 7  # rewrites existing chunk files only
    assert (tmp_path / "v.zarr").stat().st_mtime_ns == top_mtime  # the directory's own mtime does not see it
    assert open_volume(tmp_path / "v.zarr").token() != before
