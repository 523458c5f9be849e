"""Out-of-core dense CRF against the in-memory CRF: the same labels where blocks and halo cover the kernels."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from cseg_monai.data.datasets.organelles import scale_image
from cseg_monai.postprocessing import CRFParams, DenseCRF
from cseg_monai.workflows.large_crf import LargeCRF, open_probabilities

PARAMS = CRFParams(smoothness_sigma=1.0, appearance_sigma=6.0, intensity_sigma=0.1, iterations=5)


def _problem(tmp_path, shape=(3, 96, 80)):
    rng = np.random.default_rng(2)
    truth = np.zeros(shape, np.int64)
    truth[:, 20:70, 10:50] = 1
    truth[:, 40:90, 45:75] = 2
    image = (60 + 80 * truth + rng.normal(0, 12, shape)).clip(0, 255).astype(np.uint8)
    logits = 1.2 * np.eye(3)[truth].transpose(3, 0, 1, 2) + rng.normal(0, 1.0, (3, *shape))
    prob = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    zarr.open_array(tmp_path / "img.zarr", mode="w", shape=shape, chunks=(1, 48, 40), dtype="u1")[:] = image
    zarr.open_array(tmp_path / "prob.zarr", mode="w", shape=prob.shape, chunks=(3, 1, 48, 40), dtype="f4")[:] = prob
    return image, prob, truth


def test_slice_wise_blocks_equal_the_in_memory_crf(tmp_path):
    image, prob, truth = _problem(tmp_path)
    crf = DenseCRF(PARAMS, device="cpu")
    ref = np.stack([crf(prob[:, z], scale_image(image[z]), name="x") for z in range(image.shape[0])], axis=1)
    one = LargeCRF(DenseCRF(PARAMS, device="cpu"), prob_dtype="float32", block_shape=(1, 96, 80), chunks=(1, 48, 40), scheduler="synchronous", progress=False)
    out = zarr.open_group(one.run_one(tmp_path / "img.zarr", tmp_path / "prob.zarr", tmp_path / "one.ome.zarr")["output"])
    assert np.abs(out["0"][:] - ref).max() < 1e-5  # a block per slice: the in-memory CRF exactly
    many = LargeCRF(DenseCRF(PARAMS, device="cpu"), prob_dtype="float32", block_shape=(1, 48, 40), chunks=(1, 48, 40), scheduler="synchronous", progress=False)
    record = many.run_one(tmp_path / "img.zarr", tmp_path / "prob.zarr", tmp_path / "many.ome.zarr")
    assert record["blocks"] == 12 and record["halo"] == [0, 18, 18]
    labels = zarr.open_group(record["output"])["labels/segmentation/0"][:]
    assert (labels == ref.argmax(0)).mean() > 0.999
    assert (labels == truth).mean() > (prob.argmax(0) == truth).mean() + 0.05  # the CRF does its job


def test_3d_crf_uint8_store_and_bad_input(tmp_path):
    image, prob, _ = _problem(tmp_path)
    store = zarr.open_group(tmp_path / "in.ome.zarr", mode="w", zarr_format=2)
    store.create_array("0", shape=prob.shape, dtype="u1")[:] = np.rint(prob * 255).astype(np.uint8)
    store.attrs["cseg_inference"] = {"prob_scale": 1 / 255}
    array, scale = open_probabilities(tmp_path / "in.ome.zarr")
    assert scale == pytest.approx(1 / 255) and array.shape == prob.shape
    crf = DenseCRF(PARAMS, device="cpu")
    ref = crf(np.rint(prob * 255).astype(np.float32) / 255, scale_image(image), (2.0, 1.0, 1.0), name="x")
    run = LargeCRF(DenseCRF(PARAMS, device="cpu"), spacing=(2.0, 1.0, 1.0), slice_wise=False, block_shape=(3, 48, 40), chunks=(3, 48, 40),
                   scheduler="synchronous", progress=False)  # fmt: skip
    labels = zarr.open_group(run.run_one(tmp_path / "img.zarr", tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr")["output"])["labels/segmentation/0"][:]
    assert (labels == ref.argmax(0)).mean() > 0.999
    zarr.open_array(tmp_path / "small.zarr", mode="w", shape=(3, 2, 96, 80), dtype="f4")
    with pytest.raises(ValueError, match="do not fit the image"):
        run.run_one(tmp_path / "img.zarr", tmp_path / "small.zarr", tmp_path / "x.ome.zarr")
    with pytest.raises(ValueError, match=r"spacing .* must give"):
        LargeCRF(DenseCRF(PARAMS), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="native backend"):
        LargeCRF(DenseCRF(PARAMS, backend="pydensecrf"))
