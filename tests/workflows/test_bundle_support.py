"""Bundle helpers: finding the bundle's folder, unknown-key check, bundle listing."""

from __future__ import annotations

import json
import shutil

import pytest

from cseg_monai.workflows import bundle_support

from conftest import BUNDLES


def test_bundle_root_follows_the_config_file_even_when_copied(tmp_path):
    from monai.bundle import ConfigWorkflow

    copy = tmp_path / "shared_bundle"
    shutil.copytree(BUNDLES / "isbi2012_em_membrane_segmentation" / "configs", copy / "configs")
    wf = ConfigWorkflow(config_file=str(copy / "configs" / "inference.json"), logging_file=False, workflow_type="infer")
    wf.initialize()
    assert wf.parser.get_parsed_content("bundle_root") == str(copy)
    # without any config on the stack, the source tree's bundle
    assert bundle_support.bundle_root("isbi2012_em_membrane_segmentation") == str(
        BUNDLES / "isbi2012_em_membrane_segmentation")


def test_known_keys_and_bad_json(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.json").write_text(json.dumps({"x": 1, "train#trainer#max_epochs": 2}))
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"version": "1"}))
    assert bundle_support.known_config_keys(tmp_path) == {"x", "train"}
    bundle_support.check_config_keys(tmp_path, {"x": 2, "train": {}, "_meta_": {}})
    with pytest.raises(KeyError, match="'y', 'z'"):
        bundle_support.check_config_keys(tmp_path, {"x": 2, "y": 1, "z": 0})
    (tmp_path / "configs" / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match="b.json: not valid JSON"):
        bundle_support.known_config_keys(tmp_path)


def test_list_bundles_and_run_name():
    assert "isbi2012_em_membrane_segmentation" in bundle_support.list_bundles()
    assert bundle_support.run_name("eval").startswith("eval_")


def test_shutdown_distributed_releases_a_real_gloo_group(tmp_path):
    """A one-process Gloo group wrapped in DDP: shut down while the interpreter is alive."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    assert bundle_support.shutdown_distributed() is False  # nothing initialised
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(torch.nn.Linear(3, 2))
        ddp(torch.rand(4, 3)).sum().backward()  # the reducer really ran
        assert ddp.reducer is not None
        assert bundle_support.shutdown_distributed(ddp, "not a module") is True
        assert not dist.is_initialized()
        assert ddp.reducer is None and ddp.process_group is None
        import ignite.distributed as idist

        assert idist.get_world_size() == 1 and idist.model_name() == "serial"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
