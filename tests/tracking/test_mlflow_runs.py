"""The MLflow run lookup and config flattening against a real MLflow store."""

from __future__ import annotations

import mlflow
import pytest

from cseg_monai.tracking import RunLookup, find_run_id, flatten_config, log_config, new_run


def test_flatten_config_uses_mlflow_safe_names_and_truncates():
    flat = flatten_config({"a": {"b": [1, {"c": "x" * 900}]}, "empty": []}, max_len=10)
    assert flat == {"a/b/0": "1", "a/b/1/c": "x" * 10, "empty": "[]"}


def test_lookup_finds_the_newest_running_run_by_name(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = mlflow.MlflowClient(uri)
    assert find_run_id(client, "e", None) is None  # no experiment yet
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    old = client.create_run(exp, run_name="train")
    other = client.create_run(exp, run_name="eval")
    done = client.create_run(exp, run_name="train")
    client.set_terminated(done.info.run_id)  # finished runs are never picked
    assert find_run_id(client, "e", "train") == old.info.run_id
    assert find_run_id(client, "e", None) == other.info.run_id  # newest running
    lookup = RunLookup(uri, "e", "train")
    assert lookup.run_id() == old.info.run_id
    (tmp_path / "f.txt").write_text("x")
    assert lookup.log_artifact(tmp_path / "f.txt", "files")
    assert [a.path for a in client.list_artifacts(old.info.run_id, "files")] == ["files/f.txt"]
    assert not RunLookup(uri, "e", "nothing", warn=False).log_artifact(tmp_path / "f.txt")
    with pytest.raises(ValueError, match="tracking_uri and an experiment_name"):
        RunLookup("", "e")


def test_new_run_and_log_config(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client, run_id = new_run(uri, "crf", "fit")
    log_config(client, run_id, {"a": {"b": 1}})
    log_config(client, run_id, {"a": {"b": 1}, "c": 2})  # already logged params are skipped, not refused
    assert client.get_run(run_id).data.params == {"a/b": "1", "c": "2"}
    _, second = new_run(uri, "crf", "fit")  # the experiment exists now
    assert second != run_id
