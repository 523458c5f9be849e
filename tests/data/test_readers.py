"""Tests for cseg_monai.data.readers: real files in tmp_path and the shared real data, no mocks."""

from __future__ import annotations

import gzip
import itertools
import json
import math
from pathlib import Path

import h5py
import itk
import mrcfile
import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
import zarr
from monai.transforms import LoadImage, LoadImaged
from PIL import Image

from cseg_monai.data import (
    GreyPILReader,
    HDF5Reader,
    ImageReadError,
    ITKVolumeReader,
    MRCReader,
    N5Reader,
    NiftiZYXReader,
    SliceFolderReader,
    TiffVolumeReader,
    ZarrReader,
    em_readers,
    list_images,
    load_image,
)

from conftest import require_data


def real(rel: str) -> Path:
    """Path of a real data file, or skip the test with the reason."""
    return require_data(*Path(rel).parts).resolve()


def monai_load(path, **kwargs) -> torch.Tensor:
    """MONAI's own LoadImage with our readers, channel first, keeping the file's dtype."""
    return LoadImage(reader=em_readers(), image_only=True, ensure_channel_first=True, dtype=None, **kwargs)(path)


def ramp(shape, dtype=np.uint8, step=7) -> np.ndarray:
    """An asymmetric array whose values tell positions apart."""
    return ((np.arange(math.prod(shape)) * step) % np.iinfo(dtype).max).astype(dtype).reshape(shape)


# ---------------------------------------------------------------- 2D images (PIL)


def test_png_grey_is_yx_not_xy(tmp_path):
    arr = ramp((3, 5))
    Image.fromarray(arr).save(tmp_path / "a.png")
    got, meta = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(got, arr)
    assert got.dtype == np.uint8
    assert math.isnan(meta["original_channel_dim"])
    assert tuple(meta["spatial_shape"]) == (3, 5)
    assert meta["affine"].shape == (4, 4) and "spacing" not in meta
    t = monai_load(tmp_path / "a.png")
    assert tuple(t.shape) == (1, 3, 5)
    np.testing.assert_array_equal(t[0].numpy(), arr)


@pytest.mark.parametrize("mode", ["LA", "RGBA", "RGB", "P"])
def test_grey_looking_colour_png_reads_as_2d_grey(tmp_path, mode):
    grey = ramp((4, 6))
    img = Image.fromarray(grey).convert(mode)
    if mode in ("LA", "RGBA"):
        img.putalpha(Image.fromarray(np.full((4, 6), 77, np.uint8)))  # alpha is dropped
    img.save(tmp_path / "g.png")
    got, meta = load_image(tmp_path / "g.png")
    np.testing.assert_array_equal(got, grey)
    np.testing.assert_array_equal(got, np.asarray(Image.open(tmp_path / "g.png").convert("L")))
    assert math.isnan(meta["original_channel_dim"])
    assert tuple(monai_load(tmp_path / "g.png").shape) == (1, 4, 6)


def test_coloured_rgb_png_is_channel_last(tmp_path):
    rgb = np.stack([ramp((4, 6)), ramp((4, 6), step=3), np.full((4, 6), 200, np.uint8)], axis=-1)
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "c.png")
    got, meta = load_image(tmp_path / "c.png")
    np.testing.assert_array_equal(got, rgb)
    assert meta["original_channel_dim"] == -1
    assert tuple(meta["spatial_shape"]) == (4, 6)
    t = monai_load(tmp_path / "c.png")
    assert tuple(t.shape) == (3, 4, 6)
    np.testing.assert_array_equal(t.numpy(), np.moveaxis(rgb, -1, 0))


def test_16bit_and_bilevel_png(tmp_path):
    arr16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(arr16).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode.startswith("I")
    got, _ = load_image(tmp_path / "i16.png")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, arr16)

    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    Image.fromarray(mask).save(tmp_path / "bw.png")
    assert Image.open(tmp_path / "bw.png").mode == "1"
    got, _ = load_image(tmp_path / "bw.png")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, mask.astype(np.uint8) * 255)


# ---------------------------------------------------------------- TIFF


def test_multipage_tiff_reads_every_page_as_zyx(tmp_path):
    vol = ramp((4, 5, 6))
    tifffile.imwrite(tmp_path / "v.tif", vol, photometric="minisblack")
    got, meta = load_image(tmp_path / "v.tif")
    np.testing.assert_array_equal(got, vol)
    assert math.isnan(meta["original_channel_dim"])
    t = monai_load(tmp_path / "v.tif")
    assert tuple(t.shape) == (1, 4, 5, 6)
    np.testing.assert_array_equal(t[0].numpy(), vol)


def test_generic_multipage_tiff_and_single_page(tmp_path):
    vol = ramp((3, 5, 6), np.uint16, step=1001)
    with tifffile.TiffWriter(tmp_path / "pages.tiff") as tw:  # no shape metadata: plain pages
        for page in vol:
            tw.write(page, photometric="minisblack", metadata=None)
    np.testing.assert_array_equal(load_image(tmp_path / "pages.tiff")[0], vol)
    tifffile.imwrite(tmp_path / "one.tif", vol[1])
    got, meta = load_image(tmp_path / "one.tif")
    np.testing.assert_array_equal(got, vol[1])
    assert tuple(meta["spatial_shape"]) == (5, 6)


def test_tiff_series_appended_or_of_different_shapes(tmp_path):
    vol = ramp((4, 5, 6))
    for half in (vol[:2], vol[2:]):
        tifffile.imwrite(tmp_path / "app.tif", half, photometric="minisblack", append=True)
    np.testing.assert_array_equal(load_image(tmp_path / "app.tif")[0].reshape(vol.shape), vol)
    tifffile.imwrite(tmp_path / "mixed.tif", vol[0], photometric="minisblack")
    tifffile.imwrite(tmp_path / "mixed.tif", vol[0, :3], photometric="minisblack", append=True)
    with pytest.raises(ImageReadError, match=r"mixed\.tif: pages of different shapes"):
        load_image(tmp_path / "mixed.tif")


def test_rgb_tiff_is_channel_last(tmp_path):
    rgb = ramp((5, 6, 3))
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    got, meta = load_image(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(got, rgb)
    assert meta["original_channel_dim"] == -1
    assert tuple(monai_load(tmp_path / "rgb.tif").shape) == (3, 5, 6)


def test_imagej_tiff_spacing(tmp_path):
    vol = ramp((4, 5, 6))
    tifffile.imwrite(
        tmp_path / "ij.tif",
        vol,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.25),  # X, Y in pixels per unit
        metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"},
    )
    got, meta = load_image(tmp_path / "ij.tif")
    np.testing.assert_array_equal(got, vol)
    np.testing.assert_allclose(meta["spacing"], [2.0, 0.25, 0.5])
    assert meta["spacing_unit"] == "um"
    np.testing.assert_allclose(np.diag(meta["affine"]), [2.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(monai_load(tmp_path / "ij.tif").pixdim, [2.0, 0.25, 0.5])


# ---------------------------------------------------------------- HDF5 and Zarr


@pytest.fixture
def two_dataset_h5(tmp_path):
    path = tmp_path / "vol.h5"
    raw, lab = ramp((3, 4, 5)), ramp((3, 4, 5), np.uint16, step=311)
    with h5py.File(path, "w") as f:
        f["raw"] = raw
        f["raw"].attrs["element_size_um"] = [0.5, 0.1, 0.1]
        f.create_group("seg")["labels"] = lab
        f["seg/labels"].attrs["resolution"] = [40.0, 4.0, 4.0]
        f["note"] = "not an array"
    return path, raw, lab


def test_hdf5_named_dataset_and_suffix_syntax(two_dataset_h5):
    path, raw, lab = two_dataset_h5
    got, meta = load_image(path, dataset="raw")
    np.testing.assert_array_equal(got, raw)
    np.testing.assert_allclose(meta["spacing"], [0.5, 0.1, 0.1])
    assert meta["dataset"] == "raw" and meta["spacing_unit"] == "um"
    got, meta = load_image(f"{path}::seg/labels")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, lab)
    np.testing.assert_allclose(meta["spacing"], [40.0, 4.0, 4.0])
    assert "spacing_unit" not in meta  # "resolution" states no unit
    np.testing.assert_array_equal(HDF5Reader("seg/labels").load(path)[0], lab)
    t = monai_load(f"{path}::raw")
    assert tuple(t.shape) == (1, 3, 4, 5)
    np.testing.assert_allclose(t.pixdim, [0.5, 0.1, 0.1])
    d = LoadImaged(keys=["image", "label"], reader=em_readers(), dtype=None)(
        {"image": f"{path}::raw", "label": f"{path}::seg/labels"}
    )
    np.testing.assert_array_equal(d["image"].numpy(), raw)
    np.testing.assert_array_equal(d["label"].numpy(), lab)


def test_hdf5_without_name_is_ambiguous(two_dataset_h5):
    path, _, _ = two_dataset_h5
    with pytest.raises(ImageReadError, match=r"vol\.h5.*available datasets: raw, seg/labels"):
        load_image(path)
    with pytest.raises(ImageReadError, match="no array dataset 'missing'"):
        load_image(path, dataset="missing")
    with pytest.raises(RuntimeError, match=r"vol\.h5.*available datasets: raw, seg/labels"):
        monai_load(path)


def test_hdf5_single_dataset_is_picked(tmp_path):
    with h5py.File(tmp_path / "one.hdf5", "w") as f:
        f["data"] = ramp((2, 3))
    got, meta = load_image(tmp_path / "one.hdf5")
    np.testing.assert_array_equal(got, ramp((2, 3)))
    assert meta["dataset"] == "data" and "spacing" not in meta


def test_zarr_array_and_group(tmp_path):
    vol = ramp((3, 4, 5))
    zarr.open_array(tmp_path / "a.zarr", mode="w", shape=vol.shape, dtype=vol.dtype)[:] = vol
    got, meta = load_image(tmp_path / "a.zarr")
    np.testing.assert_array_equal(got, vol)
    assert tuple(monai_load(tmp_path / "a.zarr").shape) == (1, 3, 4, 5)

    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("raw", shape=vol.shape, dtype=vol.dtype)[:] = vol
    group["raw"].attrs["element_size_um"] = [1.0, 0.5, 0.5]
    group.create_group("seg").create_array("lab", shape=(2, 3), dtype="u2")[:] = 9
    got, meta = load_image(f"{tmp_path / 'g.zarr'}::raw")
    np.testing.assert_array_equal(got, vol)
    np.testing.assert_allclose(meta["spacing"], [1.0, 0.5, 0.5])
    assert load_image(tmp_path / "g.zarr", dataset="seg/lab")[0].dtype == np.uint16
    with pytest.raises(ImageReadError, match="available datasets: raw, seg/lab"):
        ZarrReader().load(tmp_path / "g.zarr")
    np.testing.assert_array_equal(monai_load(f"{tmp_path / 'g.zarr'}::raw")[0].numpy(), vol)

    chunk = next(p for p in (tmp_path / "a.zarr").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match=r"a\.zarr: corrupt or not a Zarr file"):
        load_image(tmp_path / "a.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("no zarr metadata")
    with pytest.raises(ImageReadError, match=r"plain\.zarr: corrupt or not a Zarr file"):
        load_image((tmp_path / "plain").rename(tmp_path / "plain.zarr"))


# ---------------------------------------------------------------- N5


def write_n5(folder: Path, zyx: np.ndarray, block: tuple[int, int, int], compression: str = "raw", **attrs) -> None:
    """An N5 dataset written by hand from the N5 specification, not by tensorstore: dimensions and
    block sizes listed X first, each block a big-endian header (mode 0, rank, its X, Y, Z size)
    then its voxels big-endian with X fastest, in folder ``x/y/z``; "gzip" blocks gzip-compressed."""
    folder.mkdir(parents=True)
    dtype = {"u1": "uint8", "u2": "uint16", "f4": "float32"}[zyx.dtype.str[1:]]
    meta = {"dimensions": list(zyx.shape[::-1]), "blockSize": list(block[::-1]), "dataType": dtype, "compression": {"type": compression}}
    (folder / "attributes.json").write_text(json.dumps({**meta, **attrs}))
    for index in itertools.product(*(range(-(-n // b)) for n, b in zip(zyx.shape, block))):
        part = zyx[tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, block))]
        header = np.array([0, 3], ">u2").tobytes() + np.array(part.shape[::-1], ">u4").tobytes()
        body = part.astype(zyx.dtype.newbyteorder(">")).tobytes()
        target = folder.joinpath(*(str(i) for i in index[::-1]))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(header + (gzip.compress(body) if compression == "gzip" else body))


def test_n5_written_by_the_specification_reads_as_zyx(tmp_path):
    vol = ramp((5, 6, 7), np.uint16, step=13)
    root = tmp_path / "c.n5"
    root.mkdir()
    (root / "attributes.json").write_text(json.dumps({"n5": "4.0.0"}))
    write_n5(root / "volumes" / "raw", vol, (2, 4, 3), "gzip", pixelResolution={"dimensions": [4.0, 4.0, 40.0], "unit": "nm"})
    got, meta = load_image(root)  # the only dataset, edge blocks cut short
    np.testing.assert_array_equal(got, vol)
    assert got.dtype == np.uint16 and meta["dataset"] == "volumes/raw" and meta["format"] == "N5"
    np.testing.assert_allclose(meta["spacing"], [40.0, 4.0, 4.0])
    assert meta["spacing_unit"] == "nm"
    assert tuple(monai_load(f"{root}::volumes/raw").shape) == (1, 5, 6, 7)

    # a folder without the suffix is N5 by its root attributes; several datasets must be named
    write_n5(root / "volumes" / "labels", (vol % 3).astype(np.uint8), (5, 6, 7), resolution=[1.0, 2.0, 3.0])
    plain = root.rename(tmp_path / "plain")
    with pytest.raises(ImageReadError, match="available datasets: volumes/labels, volumes/raw"):
        load_image(plain)
    got, meta = N5Reader("volumes/labels").load(plain)
    np.testing.assert_array_equal(got, vol % 3)
    np.testing.assert_allclose(meta["spacing"], [3.0, 2.0, 1.0])
    with pytest.raises(ImageReadError, match="no array dataset 'volumes/nope'"):
        N5Reader("volumes/nope").load(plain)


def test_n5_multiscale_group_reads_s0_and_bad_containers_name_the_folder(tmp_path):
    vol = ramp((4, 8, 8))
    root = tmp_path / "ms.n5"
    write_n5(root / "raw" / "s0", vol, (4, 8, 8))
    write_n5(root / "raw" / "s1", vol[::2, ::2, ::2], (2, 4, 4))
    (root / "raw" / "attributes.json").write_text(json.dumps({"resolution": [0.5, 0.5, 2.0], "scales": [[1, 1, 1], [2, 2, 2]]}))
    got, meta = load_image(root)
    np.testing.assert_array_equal(got, vol)
    assert meta["dataset"] == "raw" and meta["spacing"].tolist() == [2.0, 0.5, 0.5]

    (tmp_path / "empty.n5").mkdir()
    with pytest.raises(ImageReadError, match=r"empty\.n5: empty N5 container"):
        load_image(tmp_path / "empty.n5")
    broken = tmp_path / "broken.n5"
    write_n5(broken / "raw", vol, (4, 8, 8))
    (broken / "raw" / "0" / "0" / "0").write_bytes(b"\x00\x00\x00\x03garbage")
    with pytest.raises(ImageReadError, match=r"broken\.n5: corrupt or not a N5 file"):
        load_image(broken)
    (broken / "raw" / "attributes.json").write_text("[1, 2]")
    with pytest.raises(ImageReadError, match=r"broken\.n5: corrupt or not a N5 file.*not a JSON object"):
        load_image(broken)
    with pytest.raises(FileNotFoundError, match="missing.n5"):
        load_image(tmp_path / "missing.n5")


# ---------------------------------------------------------------- NIfTI


def test_nifti_is_transposed_to_zyx(tmp_path):
    x, y, z = np.meshgrid(np.arange(5), np.arange(4), np.arange(3), indexing="ij")
    xyz = (100 * x + 10 * y + z).astype(np.int16)  # NIfTI order (X=5, Y=4, Z=3)
    img = nib.Nifti1Image(xyz, np.diag([0.5, 0.6, 0.7, 1.0]))
    nib.save(img, tmp_path / "v.nii.gz")
    got, meta = load_image(tmp_path / "v.nii.gz")
    assert got.shape == (3, 4, 5)
    assert got[2, 1, 4] == 100 * 4 + 10 * 1 + 2  # [z, y, x]
    np.testing.assert_array_equal(got, xyz.transpose(2, 1, 0))
    np.testing.assert_allclose(meta["spacing"], [0.7, 0.6, 0.5])
    t = monai_load(tmp_path / "v.nii.gz")
    assert tuple(t.shape) == (1, 3, 4, 5)
    np.testing.assert_array_equal(t[0].numpy(), got)
    np.testing.assert_allclose(t.pixdim, [0.7, 0.6, 0.5])

    nib.save(nib.Nifti1Image(xyz[:, :, 0], np.eye(4)), tmp_path / "s.nii")
    np.testing.assert_array_equal(load_image(tmp_path / "s.nii")[0], xyz[:, :, 0].T)


# ---------------------------------------------------------------- slice folders and listing


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_volumes_are_zyx_with_their_spacing(tmp_path, suffix):
    vol = ramp((3, 4, 5)).astype(np.uint16)
    img = itk.image_from_array(vol)  # ITK index (X, Y, Z) = numpy (Z, Y, X) reversed
    img.SetSpacing([0.1, 0.2, 0.7])  # X, Y, Z
    itk.imwrite(img, str(tmp_path / f"v{suffix}"))
    arr, meta = load_image(tmp_path / f"v{suffix}")
    np.testing.assert_array_equal(arr, vol)
    assert arr.dtype == np.uint16 and meta["spacing"].tolist() == pytest.approx([0.7, 0.2, 0.1])
    assert np.diag(meta["affine"])[:3].tolist() == pytest.approx([0.7, 0.2, 0.1])
    t = monai_load(tmp_path / f"v{suffix}")
    assert tuple(t.shape) == (1, 3, 4, 5) and t.meta["spacing"].tolist() == pytest.approx([0.7, 0.2, 0.1])
    itk.imwrite(itk.image_from_array(vol), str(tmp_path / f"plain{suffix}"))  # no spacing stated: none claimed
    assert "spacing" not in load_image(tmp_path / f"plain{suffix}")[1]


def test_mrc_is_zyx_with_its_voxel_size_in_nm(tmp_path):
    vol = ramp((3, 4, 5)).astype(np.int16)
    with mrcfile.new(tmp_path / "t.mrc") as mrc:
        mrc.set_data(vol)
        mrc.voxel_size = (20.0, 30.0, 50.0)  # angstrom, X Y Z
    arr, meta = load_image(tmp_path / "t.mrc")
    np.testing.assert_array_equal(arr, vol)
    assert meta["spacing"].tolist() == pytest.approx([5.0, 3.0, 2.0]) and meta["spacing_unit"] == "nm"
    assert tuple(monai_load(tmp_path / "t.mrc").shape) == (1, 3, 4, 5)
    with mrcfile.new(tmp_path / "none.mrc") as mrc:
        mrc.set_data(vol)
        mrc.voxel_size = 0.0
    assert "spacing" not in load_image(tmp_path / "none.mrc")[1]


def test_slice_folder_natural_order(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in (10, 2, 0, 11, 1, 3, 4, 5, 6, 7, 8, 9):
        Image.fromarray(np.full((4, 6), z, np.uint8)).save(folder / f"{z}.png")
    (folder / ".hidden.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not a slice")
    got, meta = load_image(folder)
    assert got.shape == (12, 4, 6)
    assert got[:, 0, 0].tolist() == list(range(12))
    assert math.isnan(meta["original_channel_dim"])
    t = monai_load(folder)
    assert tuple(t.shape) == (1, 12, 4, 6)
    assert t[0, :, 0, 0].tolist() == list(range(12))


def test_slice_folder_rejects_mismatched_slices(tmp_path):
    for z in range(3):
        tifffile.imwrite(tmp_path / f"s{z}.tif", np.zeros((4, 6), np.uint8))
    tifffile.imwrite(tmp_path / "s10.tif", np.zeros((4, 7), np.uint8))
    tifffile.imwrite(tmp_path / "s11.tif", np.zeros((4, 6), np.uint16))
    with pytest.raises(ImageReadError, match=r"s10\.tif: slice shape \(4, 7\)"):
        SliceFolderReader().load(tmp_path)
    with pytest.raises(RuntimeError, match=r"s10\.tif: slice shape"):
        monai_load(tmp_path)


def test_list_images(tmp_path):
    for name in ("10.png", "2.tif", "1.png", ".hidden.png", "readme.txt", "b.nii.gz"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["1.png", "2.tif", "10.png", "b.nii.gz"]
    assert [p.name for p in list_images(tmp_path, suffixes=("png",))] == ["1.png", "10.png"]
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        list_images(tmp_path / "empty")


def test_em_readers_are_fresh_and_claim_their_suffixes(tmp_path):
    first, second = em_readers(), em_readers()
    assert all(a is not b for a, b in zip(first, second))
    by_type = {type(r): r for r in first}
    assert by_type[HDF5Reader].verify_suffix("a/b.H5::grp/raw")
    assert by_type[ZarrReader].verify_suffix("a/b.zarr::raw")
    assert by_type[NiftiZYXReader].verify_suffix("x.nii.gz")
    assert by_type[TiffVolumeReader].verify_suffix(["x.tif", "y.TIFF"])
    assert by_type[GreyPILReader].verify_suffix("x.png") and not by_type[GreyPILReader].verify_suffix("x.tif")
    assert not by_type[SliceFolderReader].verify_suffix(str(tmp_path))  # no slices: left to MONAI (DICOM)
    Image.fromarray(ramp((2, 2))).save(tmp_path / "0.png")
    assert by_type[SliceFolderReader].verify_suffix(str(tmp_path))
    assert by_type[SliceFolderReader].verify_suffix(str(tmp_path / "missing_folder"))
    assert by_type[ITKVolumeReader].verify_suffix(["x.nrrd", "y.mha"]) and by_type[MRCReader].verify_suffix("t.rec")
    for name in ("x.png", "x.tif", "x.h5", "x.zarr", "x.nii.gz", "x.nrrd", "x.mha", "x.mrc"):
        assert sum(r.verify_suffix(name) for r in first) == 1, name


def test_loadimage_stacks_several_files_as_channels(tmp_path):
    a, b = ramp((3, 4)), ramp((3, 4), step=5)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    t = monai_load([tmp_path / "a.png", tmp_path / "b.png"])
    np.testing.assert_array_equal(t.numpy(), np.stack([a, b]))


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("name", ["e.png", "e.tif", "e.h5", "e.nii.gz", "e.nrrd", "e.mrc"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ImageReadError, match=rf"{name}: empty file"):
        load_image(tmp_path / name)
    with pytest.raises(RuntimeError, match=rf"{name}: empty file"):
        monai_load(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("t.png", "PNG"), ("t.tif", "TIFF"), ("t.h5", "HDF5"), ("t.nii", "NIfTI"), ("t.nrrd", "NRRD/MetaImage"), ("t.mha", "NRRD/MetaImage"), ("t.mrc", "MRC")],
)
def test_text_file_with_image_suffix_is_corrupt(tmp_path, name, fmt):
    (tmp_path / name).write_text("this is plain text, not an image\n" * 20)
    with pytest.raises(ImageReadError, match=rf"{name}: corrupt or not a {fmt} file"):
        load_image(tmp_path / name)
    with pytest.raises(RuntimeError, match=rf"{name}: corrupt or not a {fmt} file"):
        monai_load(tmp_path / name)


def test_truncated_files(tmp_path):
    tifffile.imwrite(tmp_path / "full.tif", ramp((6, 30, 40)), photometric="minisblack")
    with h5py.File(tmp_path / "full.h5", "w") as f:
        f["raw"] = ramp((20, 30, 40))
    Image.fromarray(ramp((64, 64))).save(tmp_path / "full.png")
    nib.save(nib.Nifti1Image(ramp((20, 20, 20)), np.eye(4)), tmp_path / "full.nii.gz")
    for full, fmt in (("full.tif", "TIFF"), ("full.png", "PNG"), ("full.nii.gz", "NIfTI"), ("full.h5", "HDF5")):
        data = (tmp_path / full).read_bytes()
        cut = tmp_path / full.replace("full", "cut")
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageReadError, match=rf"{cut.name}: corrupt or not a {fmt} file"):
            load_image(cut)
        # MONAI's fallback PILReader would raise an anonymous OSError, or return one page as (X, Y)
        with pytest.raises(RuntimeError, match=rf"{cut.name}: corrupt or not a {fmt} file"):
            monai_load(cut)


def test_truncated_tiff_page_chain(tmp_path):
    """Cut exactly after the first pages: the data read is intact but pages are missing."""
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for page in ramp((4, 8, 8)):
            tw.write(page, photometric="minisblack", metadata=None, contiguous=False)
    with tifffile.TiffFile(tmp_path / "pages.tif") as tif:
        end = tif.pages[1].dataoffsets[0] + tif.pages[1].databytecounts[0]
    (tmp_path / "cut.tif").write_bytes((tmp_path / "pages.tif").read_bytes()[:end])
    with pytest.raises(ImageReadError, match=r"cut\.tif: corrupt or not a TIFF file"):
        load_image(tmp_path / "cut.tif")


def test_missing_path(tmp_path):
    for name in ("missing.png", "missing.h5::raw", "missing_folder"):
        with pytest.raises(FileNotFoundError, match="missing"):
            load_image(tmp_path / name)
        with pytest.raises(RuntimeError, match=r"FileNotFoundError.*missing"):
            monai_load(str(tmp_path / name))


def test_folder_without_slices_and_huge_png(tmp_path, monkeypatch):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no image files"):
        load_image(tmp_path / "dir")
    Image.fromarray(ramp((64, 64))).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own setting, lowered for the test
    with pytest.raises(ImageReadError, match=r"big\.png: larger than Pillow's safety limit"):
        load_image(tmp_path / "big.png")


def test_empty_image_and_unsupported_suffix(tmp_path):
    with h5py.File(tmp_path / "zero.h5", "w") as f:
        f["raw"] = np.zeros((0, 5), np.uint8)
    with pytest.raises(ImageReadError, match=r"zero\.h5: empty image \(shape \(0, 5\)\)"):
        load_image(tmp_path / "zero.h5")
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(ValueError, match=r"x\.xyz: unsupported.*\.png .*\.tif .*\.h5"):
        load_image(tmp_path / "x.xyz")
    with pytest.raises(ValueError, match="HDF5, Zarr and N5 only"):
        load_image(tmp_path / "zero.h5".replace("h5", "png"), dataset="raw")


# ---------------------------------------------------------------- real data


def test_real_isbi_png():
    path = real("isbi2012/train/image/0.png")
    got, meta = load_image(path)
    assert got.shape == (512, 512) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.asarray(Image.open(path).convert("L")))
    t = monai_load(path)
    assert tuple(t.shape) == (1, 512, 512)
    np.testing.assert_array_equal(t[0].numpy(), got)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_real_epfl_mixed_mode_masks(mode):
    folder = real("epfl_ca1_multiclass/epfl_train/mitochondrion")
    path = next((p for p in sorted(folder.glob("*.png")) if Image.open(p).mode == mode), None)
    if path is None:
        pytest.skip(f"no {mode} PNG in {folder}")
    got, _ = load_image(path)
    assert got.shape == (768, 1024) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.asarray(Image.open(path).convert("L")))
    assert tuple(monai_load(path).shape) == (1, 768, 1024)


def test_real_drosophila_slice_folder():
    folder = real("drosophila_vnc/stack1/raw")
    got, meta = load_image(folder)
    assert got.shape == (15, 1024, 1024) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[10], tifffile.imread(folder / "10.tif"))
    np.testing.assert_array_equal(got[2], tifffile.imread(folder / "02.tif"))
    assert tuple(monai_load(folder).shape) == (1, 15, 1024, 1024)


def test_real_drosophila_bilevel_mask_png():
    path = real("drosophila_vnc/stack1/membranes/00.png")
    got, _ = load_image(path)
    assert got.dtype == np.uint8 and set(np.unique(got)) <= {0, 255}
    np.testing.assert_array_equal(got, np.asarray(Image.open(path).convert("L")))


def test_real_gala_hdf5():
    path = real("gala_fibsem/train-image.h5")
    got, meta = load_image(path, dataset="stack")
    assert got.shape == (50, 100, 200) and got.dtype == np.uint8
    assert load_image(path)[0].shape == (50, 100, 200)  # the only dataset
    gt = real("gala_fibsem/train-gt.lzf.h5")
    assert load_image(f"{gt}::stack")[0].dtype == np.int32


def test_real_plantseg_ovule_spacing():
    path = real("plantseg/sample_ovule.h5")
    raw, meta = load_image(path, dataset="raw")
    label, lmeta = load_image(f"{path}::label")
    assert raw.shape == label.shape == (32, 128, 128)
    assert raw.dtype == np.uint8 and label.dtype == np.uint16
    np.testing.assert_allclose(meta["spacing"], [0.235, 0.15, 0.15])
    np.testing.assert_allclose(lmeta["spacing"], [0.235, 0.15, 0.15])
    assert meta["spacing_unit"] == "um"
    t = monai_load(f"{path}::raw")
    assert tuple(t.shape) == (1, 32, 128, 128)
    np.testing.assert_allclose(t.pixdim, [0.235, 0.15, 0.15])


def test_real_ctc_4d_tiff():
    path = real("ctc_fluo_n3dh_cho/image_TZYX.tif")
    got, meta = load_image(path)
    assert got.shape == (15, 5, 443, 512) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, tifffile.imread(path))
    assert math.isnan(meta["original_channel_dim"])
    assert tuple(monai_load(path).shape) == (1, 15, 5, 443, 512)


def test_real_dsb_uint16_tiff():
    path = real("dsb2018_nuclei_2d/img2d.tif")
    got, meta = load_image(path)
    assert got.shape == (512, 512) and got.dtype == np.uint16
    assert "spacing" not in meta  # resolution 1/1 without unit is not a spacing
