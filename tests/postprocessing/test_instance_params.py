"""InstanceParams: one validated set of post-processing settings, read by configs, transform, function and GUI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser

from cseg_monai.postprocessing import BoundaryToInstancesd, InstanceParams, segment_instances

from conftest import BUNDLES

CONFIGS = BUNDLES / "cell_instance_boundary_segmentation_3d" / "configs"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": "gasp"}, r"InstanceParams.method must be one of \['multicut', 'agglomeration', 'watershed'\], got 'gasp'"),
        ({"threshold": 0.0}, r"InstanceParams.threshold must be a number in \(0, 1\), got 0.0"),
        ({"beta": 1.0}, r"InstanceParams.beta must be a number in \(0, 1\)"),
        ({"foreground_threshold": float("nan")}, r"InstanceParams.foreground_threshold must be a number in \(0, 1\), got nan"),
        ({"agglomeration_threshold": -0.1}, r"InstanceParams.agglomeration_threshold must be a number in \[0, 1\]"),
        ({"sigma_seeds": -1.0}, r"InstanceParams.sigma_seeds must be a number >= 0"),
        ({"min_supervoxel_size": 2.5}, r"InstanceParams.min_supervoxel_size must be a whole number >= 0, got 2.5"),
        ({"min_size": True}, r"InstanceParams.min_size must be a whole number >= 0, got True"),
        ({"mask_watershed": "yes"}, r"InstanceParams.mask_watershed must be true or false, got 'yes'"),
        ({"min_size": 100, "max_size": 10}, r"InstanceParams: max_size \(10\) must be >= min_size \(100\)"),
        ({"max_size": 0}, r"InstanceParams.max_size must be > 0 \(it would remove every object\), or None for no limit"),
        ({"max_major_axis": None, "min_major_axis": None}, r"min_major_axis must be a number >= 0, got None"),
        ({"min_major_axis": 5.0, "max_major_axis": 1.0}, r"max_major_axis \(1.0\) must be >= min_major_axis \(5.0\)"),
        ({"edge_min_fraction": 1.0}, r"InstanceParams.edge_min_fraction must be a number in \[0, 1\), got 1.0"),
        ({"edge_min_fraction": None}, r"InstanceParams.edge_min_fraction must be a number in \[0, 1\), got None"),
        ({"sigma_seed": 4.0}, r"unknown instance parameter\(s\) \['sigma_seed'\]"),
    ],
)
def test_bad_values_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        InstanceParams().replace(**changes)


def test_round_trip_and_plain_types():
    p = InstanceParams(min_size=50.0, max_size=4000, method="agglomeration", mask_watershed=np.bool_(True),
                       threshold=np.float32(0.25), sigma_seeds=4, max_major_axis=np.float64(8.0))  # fmt: skip
    assert p.min_size == 50 and isinstance(p.min_size, int) and p.mask_watershed is True
    assert type(p.threshold) is float and type(p.sigma_seeds) is float and type(p.max_major_axis) is float
    json.dumps(p.to_dict())  # plain values: JSON and MLflow take them
    assert InstanceParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert set(InstanceParams.fields()) == set(p.to_dict())


def _two_cells():
    prob = np.zeros((2, 1, 40, 80), np.float32)
    prob[1, 0, 5:35, 5:75] = 1.0
    prob[0, 0, :, 39:41] = 1.0
    return prob


def test_the_transform_and_the_function_read_the_same_params():
    prob = _two_cells()
    params = InstanceParams(method="watershed", min_size=20, sigma_seeds=1.0)
    direct = segment_instances(prob[0], params, foreground=prob[1] >= params.foreground_threshold)
    via = BoundaryToInstancesd("pred", params, foreground_channel=1)({"pred": prob})["instances"][0].numpy()
    assert np.array_equal(direct, via) and direct.max() == 2
    # keyword changes on top of params: min_size larger than both cells removes them
    assert segment_instances(prob[0], params, min_size=10_000).max() == 0
    assert BoundaryToInstancesd("pred", params, foreground_channel=1, min_size=10_000)({"pred": prob})["instances"].max() == 0
    with pytest.raises(ValueError, match="params must be an InstanceParams, got dict"):
        segment_instances(prob[0], {"method": "watershed"})
    with pytest.raises(ValueError, match=r"BoundaryToInstancesd: unknown argument\(s\) \['foreground_chanel'\]"):
        BoundaryToInstancesd("pred", params, foreground_chanel=1)


def test_the_voxel_size_may_be_a_tensor_as_a_fiji_stack_gives_it():
    """Meta data read from an ImageJ TIFF carries the spacing as a tensor: no truth-value ambiguity."""
    import torch
    from monai.data import MetaTensor

    prob = MetaTensor(torch.from_numpy(_two_cells()), meta={"spacing": torch.tensor([1.0, 0.5, 0.5])})
    out = BoundaryToInstancesd("pred", InstanceParams(min_size=20), foreground_channel=1)({"pred": prob})
    assert int(out["instances"].max()) == 2


def _parsed(*files: str) -> InstanceParams:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    parser["bundle_root"] = str(CONFIGS.parent)
    return parser.get_parsed_content("instance_params")


# a training data override and the inference override that ships the weights trained with it
PAIRS = [
    (("train.json",), ("inference.json",)),
    (("train.json", "data_plantseg_nuclei.json"), ("inference.json", "inference_nuclei_plantseg.json")),
    (("train.json", "data_cells.json"), ("inference.json", "inference_cells.json")),
    (("train.json", "data_ctc.json"), ("inference.json", "inference_nuclei_ctc.json")),
]


@pytest.mark.parametrize("train, infer", PAIRS, ids=lambda files: files[-1])
def test_a_model_is_inferred_with_the_settings_it_was_validated_with(train, infer):
    assert _parsed(*train) == _parsed(*infer)


def _parsed_key(files, key):
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    parser["bundle_root"] = str(CONFIGS.parent)
    return parser.get_parsed_content(key)


@pytest.mark.parametrize("train, infer", PAIRS, ids=lambda files: files[-1])
def test_a_model_records_the_voxel_size_of_the_data_it_was_trained_on(train, infer):
    from cseg_monai.data.datasets import instances

    kind, root = _parsed_key(train, "dataset_kind"), _parsed_key(train, "dataset_dir")
    if not Path(root).is_dir():
        pytest.skip(f"real data {root} is absent (set CSEG_DATA_DIR or put the shared data in ../shared/data)")
    items = instances.datalist(kind, root, "train")
    spacing = instances.load_item(items[0])[2]
    assert spacing is not None
    model_spacing = _parsed_key(infer, "model_spacing")
    if model_spacing is None:  # the cells model: trained on ovule (0.235 x 0.15 x 0.15 um) and gala (no voxel size)
        kinds = [kind] if isinstance(kind, str) else list(kind)
        assert any(instances.load_item(instances.datalist(k, root, "train")[0])[2] is None for k in kinds), kinds
        assert _parsed_key(infer, "object_size") is None  # it works in the input's voxels
        return
    assert np.allclose(model_spacing, spacing, rtol=1e-3), (kind, spacing)


def test_the_bundle_writes_each_setting_once_per_file():
    """No flat copies of the settings beside ``instance_params`` (the drift this replaced)."""
    flat = set(InstanceParams.fields()) | {"instance_method", "boundary_threshold"}
    for path in sorted(CONFIGS.glob("*.json")):
        keys = set(json.loads(path.read_text()))
        assert not keys & flat, f"{path.name}: {sorted(keys & flat)} outside instance_params"
