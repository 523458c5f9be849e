"""Upload checks of the GUI: every bad volume gets a message naming the file and the problem."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest
import tifffile

from cseg_monai.apps.volumes import UploadLimits, VolumeCheckError, check_volume, volume_stem, write_job_input

RNG = np.random.default_rng(0)


def _vol(shape=(6, 20, 24), dtype=np.uint8):
    return RNG.integers(0, 200, shape).astype(dtype)


def test_grey_tiff_becomes_one_channel(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, _vol(), photometric="minisblack")
    vol = check_volume(path, in_channels=1)
    assert vol.array.shape == (1, 6, 20, 24) and vol.array.dtype == np.uint8 and vol.stem == "stack"


def test_2d_image_is_one_plane_for_models_that_take_planes(tmp_path):
    flat = _vol((20, 24), np.uint16)
    tifffile.imwrite(tmp_path / "flat.tif", flat)
    vol = check_volume(tmp_path / "flat.tif", in_channels=1, allow_2d=True)
    assert vol.array.shape == (1, 1, 20, 24) and np.array_equal(vol.array[0, 0], flat) and vol.spacing is None
    tifffile.imwrite(tmp_path / "rgb.tif", _vol((20, 24, 3)), photometric="rgb")
    with pytest.raises(VolumeCheckError, match=r"rgb.tif: a 2D image of shape \(20, 24, 3\) \(colour samples last\); this model needs a grey image"):
        check_volume(tmp_path / "rgb.tif", in_channels=1, allow_2d=True)


def test_two_channel_imagej_tiff_hdf5_and_nifti(tmp_path):
    two = _vol((2, 6, 20, 24), np.uint16)
    tifffile.imwrite(tmp_path / "hyper.tif", np.moveaxis(two, 0, 1), imagej=True, metadata={"axes": "ZCYX"})
    assert np.array_equal(check_volume(tmp_path / "hyper.tif", 2).array, two)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["raw"] = two
        f["labels"] = np.zeros((6, 20, 24), np.uint16)
    assert np.array_equal(check_volume(tmp_path / "two.h5", 2, dataset="raw").array, two)
    vol = _vol()
    nib.save(nib.Nifti1Image(np.transpose(vol).astype(np.float32), np.diag([0.5, 0.5, 2.0, 1.0])), tmp_path / "v.nii.gz")
    checked = check_volume(tmp_path / "v.nii.gz", 1)
    assert checked.stem == "v" and np.array_equal(checked.array[0], vol)
    assert checked.spacing == pytest.approx((2.0, 0.5, 0.5))  # (z, y, x) from the NIfTI header


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: tifffile.imwrite(p / "a.tif", _vol((20, 24))), "a.tif: a 2D image of shape (20, 24)"),
        (lambda p: tifffile.imwrite(p / "a.tif", _vol((20, 24, 3)), photometric="rgb"), "a.tif: a 2D image of shape (20, 24, 3) (colour samples last)"),
        (lambda p: np.save(p / "a.npy", _vol()), "a.npy: unsupported file type"),
        (lambda p: tifffile.imwrite(p / "a.tif", np.zeros((4, 8, 8), np.uint8), photometric="minisblack"), "a.tif: every voxel has the value 0"),
        (lambda p: tifffile.imwrite(p / "a.tif", np.full((4, 8, 8), np.nan, np.float32), photometric="minisblack"), "a.tif: 256 voxels are NaN"),
        (lambda p: (p / "a.tif").write_bytes(b"II*\x00" + b"\x00" * 20), "a.tif: corrupt or not a TIFF"),
        (lambda p: (p / "a.h5").write_bytes(b"not hdf5"), "a.h5: corrupt or not a HDF5"),
        (lambda p: tifffile.imwrite(p / "a.tif", _vol((2, 6, 20, 24))), "a.tif: 2 channel(s), but the chosen model takes 1"),
        (lambda p: tifffile.imwrite(p / "a.tif", _vol((5, 6, 20, 24))), "a.tif: shape (5, 6, 20, 24) is not a volume"),
    ],
)
def test_bad_uploads_are_named_and_explained(tmp_path, make, message):
    make(tmp_path)
    path = next(tmp_path.iterdir())
    with pytest.raises(VolumeCheckError) as err:
        check_volume(path, in_channels=1)
    assert str(err.value).startswith(message.split(":")[0] + ":")
    assert message.lower() in str(err.value).lower(), str(err.value)


def test_hdf5_with_several_arrays_needs_a_name(tmp_path):
    with h5py.File(tmp_path / "many.h5", "w") as f:
        f["raw"], f["seg"] = _vol(), _vol()
    with pytest.raises(VolumeCheckError, match=r"many\.h5.*raw.*seg"):
        check_volume(tmp_path / "many.h5", 1)
    with pytest.raises(VolumeCheckError, match=r"many\.h5.*'nope'"):
        check_volume(tmp_path / "many.h5", 1, dataset="nope")


def test_size_and_voxel_limits(tmp_path):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, _vol((8, 64, 64)))
    with pytest.raises(VolumeCheckError, match=r"big\.tif: 0\.0\d+ MB is over the upload limit of 0\.01 MB"):
        check_volume(path, 1, limits=UploadLimits(max_megabytes=0.01))
    with pytest.raises(VolumeCheckError, match=r"big\.tif: 32,768 voxels is over the limit of 1,000"):
        check_volume(path, 1, limits=UploadLimits(max_voxels=1000))
    with pytest.raises(VolumeCheckError, match="shown.tif"):  # the name as uploaded, not the temporary one
        check_volume(path, 1, limits=UploadLimits(max_voxels=1000), name="shown.tif")


def test_job_input_reads_back_channel_first_through_the_bundle_loader(tmp_path):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from cseg_monai.apps.volumes import Volume
    from cseg_monai.data import em_readers

    load = Compose([LoadImaged("image", reader=em_readers(), image_only=True), EnsureChannelFirstd("image")])
    for channels, dtype in ((1, np.uint8), (2, np.uint16), (2, np.int32)):
        arr = _vol((channels, 5, 12, 16), dtype)
        path = write_job_input(Volume("x.h5", f"x{channels}{np.dtype(dtype).name}", arr, None), tmp_path)
        back = np.asarray(load({"image": str(path)})["image"])
        assert back.shape == arr.shape and np.array_equal(back, arr.astype(np.float64))


def test_stems():
    assert volume_stem("a b.nii.gz") == "a_b" and volume_stem("x.H5") == "x" and volume_stem(".tif") == "volume"


def test_a_channel_of_a_two_channel_upload_for_a_one_channel_model(tmp_path):
    """A nuclei + membrane stack (2 x Z x Y x X), segmented by a 1-channel nuclei model."""
    vol = np.stack([np.arange(4 * 8 * 8).reshape(4, 8, 8), 1000 - np.arange(4 * 8 * 8).reshape(4, 8, 8)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "two.tif", np.moveaxis(vol, 0, 1), imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(VolumeCheckError, match=r"two.tif: 2 channel\(s\), but the chosen model takes 1; choose the channel to segment \(0-1\)"):
        check_volume(tmp_path / "two.tif", 1)
    picked = check_volume(tmp_path / "two.tif", 1, channel=1)
    assert picked.array.shape == (1, 4, 8, 8) and np.array_equal(picked.array[0], vol[1])
    with pytest.raises(VolumeCheckError, match=r"two.tif: channel 2 does not exist; the volume has channels 0-1"):
        check_volume(tmp_path / "two.tif", 1, channel=2)
    assert check_volume(tmp_path / "two.tif", 2, channel=0).array.shape == (2, 4, 8, 8)  # a 2-channel model takes both
