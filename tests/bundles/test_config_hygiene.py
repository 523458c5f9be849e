"""Bundle configs: one list per workflow, named references, nothing outside the bundle's folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import BUNDLES

CONFIGS = sorted(p for p in BUNDLES.glob("*/configs/*.json") if p.name != "metadata.json")
INDEXED_REF = re.compile(r"@([A-Za-z_][\w#]*)\[\s*[-:\d]")
RUN_IDS = ("training", "evaluating", "inferring")


def _lookup(config: dict, ref: str):
    node = config
    for part in ref.split("#"):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _bundle_config(path: Path) -> dict:
    """The file merged on top of its bundle's train.json (ids in the file win), as MONAI merges them."""
    merged = dict(json.loads((path.parent / "train.json").read_text())) if (path.parent / "train.json").is_file() else {}
    merged.update(json.loads(path.read_text()))
    return merged


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_run_lists_are_not_copies(path):
    config = json.loads(path.read_text())
    if "run" not in config:
        return
    for other in RUN_IDS:
        if other in config:
            assert config["run"] != config[other], f"{path}: 'run' repeats '{other}': write \"run\": [\"@{other}\"]"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_no_positional_references_into_component_lists(path):
    """``@train#handlers[: -2]`` or ``@load_transforms[0]`` break silently when the list changes."""
    config = _bundle_config(path)
    bad = []
    for ref in INDEXED_REF.findall(path.read_text()):
        target = _lookup(config, ref)
        if isinstance(target, list) and any(isinstance(x, dict) or (isinstance(x, str) and x.startswith(("$", "@"))) for x in target):
            bad.append(ref)
    assert not bad, f"{path}: positional references into lists of components {bad}: give the item an id of its own"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_no_path_leaves_the_bundle(path):
    text = path.read_text()
    assert "@bundle_root + '/.." not in text and "'..'" not in text, f"{path} reaches outside its bundle's folder"
    assert "shared/data" not in text and "'shared'" not in text, f"{path}: use cseg_monai.common.data_root() for the data"


# ids an inference.json sets for its own run (inputs, outputs, what runs), not the model's definition;
# "network": train.json wraps network_def in load_pretrained_backbone (how a training starts), inference
# loads trained weights into network_def itself (network_def, the definition, is still compared)
RUN_SPECIFIC = {"dataset_dir", "imports", "initialize", "network", "output_dir", "run", "tta_transforms"}
PAIRED = sorted(p.parent for p in BUNDLES.glob("*/configs/inference.json") if (p.parent / "train.json").is_file())


@pytest.mark.parametrize("configs", PAIRED, ids=lambda p: p.parent.name)
def test_inference_restates_the_model_exactly_as_train_defines_it(configs):
    """inference.json stands alone (as the model zoo's spleen bundle does); what it restates must not drift."""
    train = json.loads((configs / "train.json").read_text())
    infer = json.loads((configs / "inference.json").read_text())
    assert "network_def" in infer and "network_def" in train
    drift = sorted(k for k in set(train) & set(infer) - RUN_SPECIFIC if train[k] != infer[k])
    assert not drift, f"{configs}: inference.json and train.json define {drift} differently"
