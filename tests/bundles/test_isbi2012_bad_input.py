"""Bad input through the bundle's own loading pipeline: one clear error naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from monai.bundle import ConfigParser
from PIL import Image

from conftest import BUNDLES, bundle_workflow, error_chain

CONFIGS = BUNDLES / "isbi2012_em_membrane_segmentation" / "configs"


@pytest.fixture(scope="module")
def load():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    from monai.transforms import Compose

    return Compose(parser.get_parsed_content("load_transforms"))


def _png(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def _grey(shape=(32, 32), seed=0):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def _label(shape=(32, 32)):
    lab = np.full(shape, 255, np.uint8)
    lab[:, shape[1] // 2] = 0
    return lab


def test_good_pair_loads(load, tmp_path):
    out = load({"image": _png(tmp_path / "i.png", _grey()), "label": _png(tmp_path / "l.png", _label())})
    assert tuple(out["image"].shape) == (1, 32, 32)
    assert set(np.unique(out["label"].numpy())) == {0.0, 1.0}
    assert float(out["label"].sum()) == 32  # the one membrane column


def test_colour_image_is_refused(load, tmp_path):
    rgb = np.stack([_grey(seed=1), _grey(seed=2), _grey(seed=3)], axis=-1)
    path = _png(tmp_path / "colour.png", rgb)
    with pytest.raises(Exception) as excinfo:
        load({"image": path, "label": _png(tmp_path / "l.png", _label())})
    text = error_chain(excinfo)
    assert "colour.png" in text and "1 channel" in text


@pytest.mark.parametrize("content, word", [(b"", "empty"), (b"\x89PNG\r\n\x1a\n garbage", "corrupt")])
def test_empty_or_corrupt_file(load, tmp_path, content, word):
    bad = tmp_path / "broken.png"
    bad.write_bytes(content)
    with pytest.raises(Exception) as excinfo:
        load({"image": str(bad), "label": _png(tmp_path / "l.png", _label())})
    text = error_chain(excinfo)
    assert "broken.png" in text and word in text.lower()


def test_shape_mismatch(load, tmp_path):
    with pytest.raises(Exception) as excinfo:
        load({"image": _png(tmp_path / "img.png", _grey((32, 32))), "label": _png(tmp_path / "lab.png", _label((32, 40)))})
    text = error_chain(excinfo)
    assert "img.png" in text and "lab.png" in text and "differ" in text


def test_label_values_out_of_range(load, tmp_path):
    lab = _label()
    lab[0, 0] = 128
    with pytest.raises(Exception) as excinfo:
        load({"image": _png(tmp_path / "i.png", _grey()), "label": _png(tmp_path / "odd_label.png", lab)})
    text = error_chain(excinfo)
    assert "odd_label.png" in text and "[128]" in text


def test_nan_image(load, tmp_path):
    img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    img[3, 4] = np.nan
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, img)
    with pytest.raises(Exception) as excinfo:
        load({"image": str(path), "label": _png(tmp_path / "l.png", _label())})
    text = error_chain(excinfo)
    assert "nan.tif" in text and "NaN" in text


def test_missing_dataset_dir(tmp_path):
    missing = tmp_path / "no_such_folder"
    wf = bundle_workflow(CONFIGS, ["train.json"], "train", logging_file=False, dataset_dir=str(missing),
                         output_dir=str(tmp_path / "out"))
    wf.initialize()
    with pytest.raises(Exception) as excinfo:
        wf.run()
    text = error_chain(excinfo)
    assert str(missing) in text and "does not exist" in text
    assert not (tmp_path / "out" / "models").exists()


def test_unknown_override_key_is_reported(tmp_path):
    """A typo in an override stops the run before anything is trained or written."""
    wf = bundle_workflow(CONFIGS, ["train.json"], "train", logging_file=False, output_dir=str(tmp_path / "out"),
                         learnig_rate=0.1)
    with pytest.raises(Exception) as excinfo:
        wf.initialize()
    assert "'learnig_rate' (did you mean 'learning_rate'?)" in error_chain(excinfo)
    assert not (tmp_path / "out").exists()
