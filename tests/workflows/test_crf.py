"""The CRF workflow: pairing images with STEM_prob.tif, reading probabilities, refusing bad folders."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cseg_monai.data.writers import write_tiff
from cseg_monai.postprocessing import CRFParams, DenseCRF
from cseg_monai.workflows.crf import CRFInference, crf_datalist, load_probabilities


def _pair(root, stem="a", shape=(8, 8)):
    write_tiff(root / "img" / f"{stem}.tif", np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8))
    prob = np.random.default_rng(1).random((3, *shape)).astype(np.float32)
    write_tiff(root / "prob" / f"{stem}_prob.tif", prob / prob.sum(0))


def test_pairs_by_stem_and_names_what_is_missing(tmp_path):
    _pair(tmp_path, "a")
    _pair(tmp_path, "b")
    assert [i["image"].endswith(f"{s}.tif") for i, s in zip(crf_datalist(tmp_path / "img", tmp_path / "prob"), "ab")] == [True, True]
    write_tiff(tmp_path / "prob" / "c_prob.tif", np.full((3, 8, 8), 1 / 3, np.float32))
    with pytest.raises(FileNotFoundError, match=r"no image in .* for the probability file\(s\) \['c_prob.tif'\]"):
        crf_datalist(tmp_path / "img", tmp_path / "prob")
    with pytest.raises(FileNotFoundError, match="holds no \\*_prob.tif"):
        crf_datalist(tmp_path / "img", tmp_path / "img")


def test_load_probabilities_checks_shape_dtype_and_corruption(tmp_path):
    write_tiff(tmp_path / "p_prob.tif", np.zeros((2, 4, 5), np.float32))
    assert load_probabilities(tmp_path / "p_prob.tif", (4, 5)).shape == (2, 4, 5)
    with pytest.raises(ValueError, match="do not fit the image"):
        load_probabilities(tmp_path / "p_prob.tif", (5, 4))
    tifffile.imwrite(tmp_path / "i_prob.tif", np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="must be floating point"):
        load_probabilities(tmp_path / "i_prob.tif", (4, 5))
    (tmp_path / "bad_prob.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="bad_prob.tif: cannot read"):
        load_probabilities(tmp_path / "bad_prob.tif", (4, 5))
    with pytest.raises(FileNotFoundError, match="missing"):
        load_probabilities(tmp_path / "none_prob.tif", (4, 5))


def test_inference_writes_refined_files_and_never_into_its_inputs(tmp_path):
    _pair(tmp_path, "a")
    crf = DenseCRF(CRFParams(iterations=2))
    items = crf_datalist(tmp_path / "img", tmp_path / "prob")
    with pytest.raises(ValueError, match="holds the input"):
        CRFInference(crf, items, tmp_path / "prob", progress=False)
    written = CRFInference(crf, items, tmp_path / "out", progress=False).run()
    assert [p.name for p in written] == ["a_labels.tif"]
    refined = tifffile.imread(tmp_path / "out" / "a_prob.tif")
    assert refined.shape == (3, 8, 8) and np.allclose(refined.sum(0), 1, atol=1e-5)
    with pytest.raises(ValueError, match="datalist is empty"):
        CRFInference(crf, [], tmp_path / "out")
    with pytest.raises(TypeError, match="DenseCRF"):
        CRFInference(object(), items, tmp_path / "out")
