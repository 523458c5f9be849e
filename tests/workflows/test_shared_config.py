"""The config every trained bundle shares: one source, copies that a test keeps in step."""

from __future__ import annotations

import json

import pytest
from monai.bundle import ConfigParser

from cseg_monai.workflows.shared_config import SHARED_TRAIN_CONFIG, load_shared_config, shared_config_drift, sync_shared_config

from conftest import BUNDLES

TRAINED = sorted(p.parent.parent.name for p in BUNDLES.glob("*/configs/train.json"))


def test_every_trained_bundle_is_covered():
    assert len(TRAINED) >= 3 and SHARED_TRAIN_CONFIG.is_file()


@pytest.mark.parametrize("name", TRAINED)
def test_bundle_copy_is_in_step_with_the_source(name):
    drift = shared_config_drift(BUNDLES / name / "configs" / "train.json")
    assert not drift, f"{name}/configs/train.json differs from configs/train_common.json at {drift}: run scripts/sync_shared_config.py"


@pytest.mark.parametrize("name", TRAINED)
def test_the_source_is_a_monai_override_that_changes_nothing_in_a_bundle(name):
    train = BUNDLES / name / "configs" / "train.json"
    alone, merged = ConfigParser(), ConfigParser()
    alone.read_config(str(train))
    merged.read_config([str(train), str(SHARED_TRAIN_CONFIG)])
    assert merged.get() == alone.get()


def test_sync_repairs_drift_in_place_and_keeps_the_rest(tmp_path):
    source = BUNDLES / TRAINED[0] / "configs" / "train.json"
    config = json.loads(source.read_text())
    config["resume"] = True  # a shared value changed by hand
    del config["train"]["handlers"]  # a shared value missing
    config["learning_rate"] = 0.5  # the bundle's own value
    path = tmp_path / "train.json"
    path.write_text(json.dumps(config))
    assert set(shared_config_drift(path)) == {"resume", "train#handlers"}
    assert set(sync_shared_config(path)) == {"resume", "train#handlers"}
    after = json.loads(path.read_text())
    assert shared_config_drift(path) == [] and after["learning_rate"] == 0.5
    assert list(after) == list(config)  # keys stay in place
    assert sync_shared_config(path) == []


def test_bad_files_are_named_and_left_alone(tmp_path):
    bad = tmp_path / "train.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"train.json: not valid JSON"):
        sync_shared_config(bad)
    assert bad.read_text() == "{not json"
    with pytest.raises(FileNotFoundError, match="nope.json: the shared bundle config is missing"):
        load_shared_config(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="absent.json: no such config file"):
        shared_config_drift(tmp_path / "absent.json")
    listy = tmp_path / "listy.json"
    listy.write_text(json.dumps({"train#handlers#0": {}}))
    with pytest.raises(ValueError, match=r"listy.json: ids \['train#handlers#0'\] point into a list"):
        load_shared_config(listy)


def test_drift_counts_types(tmp_path):
    shared = {"resume": False, "seed": 1}
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"resume": 0, "seed": 1.0}))
    assert shared_config_drift(path, shared) == ["resume", "seed"]


def test_the_script_checks_and_writes(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_shared_config.py"), "--check"],
                         capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(f"{name}: in step" in out.stdout for name in TRAINED)
