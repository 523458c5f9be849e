"""Sharing a bundle: export to a zip, import anywhere, same outputs, the model zoo's checks; versions.

The round trip (marked slow, still in CI) exports every bundle, unpacks it into a temporary folder
outside this repository, runs its ``inference.json`` on its own ``sample_data`` and compares
with the original; it then runs the offline model-zoo checks of
``tests/bundles/test_model_zoo_checks.py`` on the unpacked copy. The fast tests build a small
network-less bundle to check the rewrites, the refusals and the atomic writes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import fire
import numpy as np
import pytest
import tifffile
from monai.bundle import ConfigParser
from monai.bundle import download as monai_download
from PIL import Image

from cseg_monai.cli import CLI
from cseg_monai.workflows import bundle_workflow, export_bundle, import_bundle, list_bundles
from cseg_monai.workflows.bundle_export import (
    DATA_DIR_ENV,
    EXPORT_SECTION,
    BundleExistsError,
    bundle_digest,
    has_network,
    portable_config,
)

from conftest import BUNDLES, ROOT


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mzc = _load("model_zoo_checks", ROOT / "tests" / "bundles" / "test_model_zoo_checks.py")
versions = _load("record_bundle_versions", ROOT / "scripts" / "record_bundle_versions.py")

ALL = list_bundles()
pytestmark = pytest.mark.filterwarnings("ignore:No hash value provided:UserWarning")


# ---------------------------------------------------------------- a small bundle without a network


def _write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=4) + "\n")


def _tiny_bundle(root: Path, **extra_train) -> Path:
    """A network-less bundle folder named ``tiny_bundle`` with a data default and a sibling path."""
    bundle = root / "tiny_bundle"
    _write_json(bundle / "configs" / "metadata.json", {"version": "0.1.0", "changelog": {"0.1.0": "first"}, "name": "tiny"})
    _write_json(bundle / "configs" / "inference.json", {
        "imports": ["$import os", "$import cseg_monai"],
        "bundle_root": "$cseg_monai.workflows.bundle_root('tiny_bundle')",
        "dataset_dir": "$@bundle_root + '/sample_data'",
        "run": ["$print(@dataset_dir)"],
    })  # fmt: skip
    _write_json(bundle / "configs" / "train.json", {
        "imports": ["$import os", "$import cseg_monai"],
        "bundle_root": "$cseg_monai.workflows.bundle_root('tiny_bundle')",
        "dataset_dir": "$str(cseg_monai.common.data_root('isbi2012'))",
        "all_data": "$str(cseg_monai.common.data_root())",
        "prob_dir": "$@bundle_root + '/../fibsem_organelle_centervoxel_segmentation/eval'",
        **extra_train,
    })  # fmt: skip
    (bundle / "LICENSE").write_text("Apache-2.0\n")
    (bundle / "docs").mkdir()
    (bundle / "docs" / "README.md").write_text("# tiny\n")
    for junk in ("outputs/run.log", "eval/x_prob.tif", "mlruns/1/meta.yaml", "configs/__pycache__/a.pyc"):
        (bundle / junk).parent.mkdir(parents=True, exist_ok=True)
        (bundle / junk).write_text("run output")
    return bundle


def _parsed(config: Path, key: str, root: Path):
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(root)
    return parser.get_parsed_content(key)


def test_export_layout_rewrites_and_notes(tmp_path, monkeypatch):
    bundle = _tiny_bundle(tmp_path / "src")
    result = export_bundle(bundle, f"{tmp_path / 'out'}/")  # a folder: writes out/NAME.zip
    assert result.path == tmp_path / "out" / "tiny_bundle.zip" and not result.torchscript
    assert result.version == "0.1.0" and result.digest == bundle_digest(bundle)
    with zipfile.ZipFile(result.path) as zf:
        names = set(zf.namelist())
    assert {n.split("/")[0] for n in names} == {"tiny_bundle"}
    assert "tiny_bundle/eval/schema.json" in names and "tiny_bundle/LICENSE" in names
    assert not any(part in n for n in names for part in ("outputs/", "mlruns/", "__pycache__", "x_prob.tif"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny_bundle.zip"]  # no temporary file left
    assert result.path.stat().st_mode & 0o044  # readable by others: a zip to share

    copy = import_bundle(result.path, tmp_path / "unpacked")
    assert copy == tmp_path / "unpacked" / "tiny_bundle"
    train = copy / "configs" / "train.json"
    assert "data_root(" not in train.read_text() and "/.." not in train.read_text()
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert _parsed(train, "dataset_dir", copy) == str(copy / "data" / "isbi2012")
    assert _parsed(train, "all_data", copy) == str(copy / "data")
    assert _parsed(train, "prob_dir", copy) == str(copy / "data" / "fibsem_organelle_centervoxel_segmentation" / "eval")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert _parsed(train, "dataset_dir", copy) == str(tmp_path / "elsewhere" / "isbi2012")
    # unchanged files are copied byte for byte; the notes list every rewrite
    assert (copy / "configs" / "inference.json").read_bytes() == (bundle / "configs" / "inference.json").read_bytes()
    notes = (copy / "docs" / "README.md").read_text()
    assert notes.startswith("# tiny\n") and EXPORT_SECTION in notes and notes.count("- Rewritten") == 3 == len(result.rewrites)
    assert result.digest in notes and "tiny_bundle v0.1.0 exported to" in str(result)


@pytest.mark.parametrize(
    "value, reason",
    [
        ("$@bundle_root + '/../some_other_folder/x'", "'..' path component"),
        ("../relative/data", "'..' path component"),
        (str(ROOT / "bundles" / "x"), "absolute path into this checkout"),
        ("$cseg_monai.workflows.bundles_dir() / 'x'", "bundles_dir()"),
        ("$cseg_monai.common.data_root(name)", "data_root() call"),
    ],
)
def test_export_refuses_a_path_that_leaves_the_bundle_naming_the_file_and_id(tmp_path, value, reason):
    bundle = _tiny_bundle(tmp_path / "src", handlers=[{"path": value}])
    old = tmp_path / "out" / "tiny_bundle.zip"
    old.parent.mkdir()
    old.write_bytes(b"the old zip")
    with pytest.raises(ValueError, match=r"train\.json: 'handlers#0#path' = .* reaches outside the bundle") as err:
        export_bundle(bundle, old, overwrite=True)
    assert reason in str(err.value)
    assert old.read_bytes() == b"the old zip" and sorted(p.name for p in old.parent.iterdir()) == ["tiny_bundle.zip"]


def test_portable_config_needs_os_where_a_file_has_imports(tmp_path):
    path = tmp_path / "configs" / "train.json"
    _write_json(path, {"imports": ["$import cseg_monai"], "dataset_dir": "$str(cseg_monai.common.data_root('isbi2012'))"})
    with pytest.raises(ValueError, match=r"train\.json: .*\$import os"):
        portable_config(path, set())
    _write_json(path, {"dataset_dir": "$str(cseg_monai.common.data_root('isbi2012'))"})  # an override: the base imports
    text, rewrites = portable_config(path, set())
    assert "CSEG_DATA_DIR" in json.loads(text)["dataset_dir"] and len(rewrites) == 1


def test_export_arguments_are_checked_up_front(tmp_path):
    with pytest.raises(ValueError, match="unknown bundle 'nope'"):
        export_bundle("nope", tmp_path / "x.zip")
    bundle = _tiny_bundle(tmp_path / "src")
    with pytest.raises(ValueError, match="ending in .zip"):
        export_bundle(bundle, tmp_path / "x.tar")
    export_bundle(bundle, tmp_path / "x.zip")
    with pytest.raises(BundleExistsError, match=r"x\.zip exists"):
        export_bundle(bundle, tmp_path / "x.zip")
    assert export_bundle(bundle, tmp_path / "x.zip", overwrite=True).path == tmp_path / "x.zip"
    meta = bundle / "configs" / "metadata.json"
    _write_json(meta, {"version": "0.2.0", "changelog": {"0.1.0": "first"}})
    with pytest.raises(ValueError, match=r"metadata\.json: version 0\.2\.0 has no changelog entry"):
        export_bundle(bundle, tmp_path / "y.zip")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_import_refuses_bad_zips_and_existing_folders(tmp_path):
    meta = json.dumps({"version": "0.1.0", "changelog": {"0.1.0": "x"}}).encode()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_bundle(tmp_path / "missing.zip", tmp_path / "d")
    (tmp_path / "plain.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="not a zip file"):
        import_bundle(tmp_path / "plain.zip", tmp_path / "d")
    cases = {
        "two.zip": ({"a/configs/metadata.json": meta, "b/LICENSE": b""}, "exactly one top-level folder"),
        "flat.zip": ({"configs/metadata.json": meta, "LICENSE": b""}, "lies at the top level"),
        "slip.zip": ({"a/configs/metadata.json": meta, "a/../../evil.txt": b""}, "outside the bundle folder"),
        "nometa.zip": ({"a/LICENSE": b""}, "no a/configs/metadata.json"),
    }
    for name, (members, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            import_bundle(_zip(tmp_path / name, members), tmp_path / "d")
    assert not (tmp_path / "evil.txt").exists() and not any((tmp_path / "d").glob("*"))  # nothing left behind

    good = _zip(tmp_path / "good.zip", {"a/configs/metadata.json": meta, "a/LICENSE": b"v1"})
    assert import_bundle(good, tmp_path / "d") == tmp_path / "d" / "a"
    _zip(good, {"a/configs/metadata.json": meta, "a/LICENSE": b"v2"})
    with pytest.raises(BundleExistsError, match="exists"):
        import_bundle(good, tmp_path / "d")
    assert (tmp_path / "d" / "a" / "LICENSE").read_bytes() == b"v1"
    import_bundle(good, tmp_path / "d", overwrite=True)
    assert (tmp_path / "d" / "a" / "LICENSE").read_bytes() == b"v2"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a"]  # no staging folder left


def test_cli_bundle_export_and_import_through_fire(tmp_path, capsys):
    bundle = _tiny_bundle(tmp_path / "src")
    out = fire.Fire(CLI, command=["bundle", "export", str(bundle), str(tmp_path / "t.zip")], name="cseg")
    assert out.startswith("tiny_bundle v0.1.0 exported to")
    msg = fire.Fire(CLI, command=["bundle", "import", str(tmp_path / "t.zip"), str(tmp_path / "d")], name="cseg")
    assert "bundle unpacked to" in msg and (tmp_path / "d" / "tiny_bundle" / "configs" / "metadata.json").is_file()
    with pytest.raises(BundleExistsError):
        CLI().bundle.import_(str(tmp_path / "t.zip"), str(tmp_path / "d"))
    fire.Fire(CLI, command=["bundle", "import", str(tmp_path / "t.zip"), str(tmp_path / "d"), "--overwrite"], name="cseg")


# ---------------------------------------------------------------- versions


def test_digest_ignores_version_changelog_and_formatting_not_configs_or_weights(tmp_path):
    bundle = _tiny_bundle(tmp_path / "src")
    before = bundle_digest(bundle)
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["version"], meta["changelog"]["0.2.0"] = "0.2.0", "bumped"
    meta_file.write_text(json.dumps(meta))  # bumped and re-indented
    assert bundle_digest(bundle) == before
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"weights")
    with_weights = bundle_digest(bundle)
    assert with_weights != before
    (bundle / "configs" / "inference.json").write_text((bundle / "configs" / "inference.json").read_text().replace("/sample_data", "/x"))
    assert bundle_digest(bundle) not in (before, with_weights)


def test_version_check_logic_on_a_made_up_record():
    now = versions.current()
    assert set(now) == set(ALL)
    name = ALL[0]
    changed = {**now, name: {**now[name], "sha256": "0" * 64}}
    must_bump, stale = versions.problems(changed, now)
    assert len(must_bump) == 1 and not stale
    assert "bump `version`" in must_bump[0] and "changelog" in must_bump[0] and versions.COMMAND in must_bump[0]
    bumped = {**now, name: {"version": "0.0.1", "sha256": "0" * 64}}  # recorded an older version
    must_bump, stale = versions.problems(bumped, now)
    assert not must_bump and len(stale) == 1 and "re-record" in stale[0]
    newer = {**now, name: {"version": "99.0.0", "sha256": now[name]["sha256"]}}
    assert "lower than the recorded" in versions.problems(newer, now)[0][0]


@pytest.mark.parametrize("bundle", ALL)
def test_changelog_has_an_entry_for_the_current_version(bundle):
    meta = json.loads((BUNDLES / bundle / "configs" / "metadata.json").read_text())
    assert str(meta["version"]) in meta["changelog"], (
        f"{bundle}: configs/metadata.json has version {meta['version']} but no changelog entry for it"
    )


def test_changed_bundles_have_a_new_version():
    """Against the record written by ``scripts/record_bundle_versions.py``."""
    if not versions.RECORD.is_file():
        pytest.skip(f"{versions.RECORD.relative_to(ROOT)} is not recorded yet: run `{versions.COMMAND}`")
    must_bump, stale = versions.problems(versions.load_record())
    assert not must_bump, "\n".join(must_bump)
    assert not stale, "the bundle-version record is out of date:\n" + "\n".join(stale)


# ---------------------------------------------------------------- the round trip (every bundle)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """Every bundle exported to a zip and unpacked (import_bundle) into a folder outside the repository."""
    tmp = tmp_path_factory.mktemp("shared_bundles")
    assert ROOT not in tmp.resolve().parents
    out = {}
    for name in ALL:
        result = export_bundle(name, f"{tmp / 'zips'}/")
        out[name] = import_bundle(result.path, tmp / "unpacked")
    return out


def _outputs(folder: Path) -> dict[str, np.ndarray]:
    """Every TIFF a run wrote, and for the pretraining bundle (no TIFF) its per-file pretext scores and pictures."""
    out = {p.name: tifffile.imread(p) for p in sorted(folder.glob("*.tif"))}
    scores = folder / "pretext_scores.json"
    if scores.is_file():
        rows = json.loads(scores.read_text())  # keyed by input path: the same sample file name in both bundles
        out.update({f"{Path(k).name}:{m}": np.float64(v[m]) for k, v in rows.items() for m in ("mse", "baseline_mse")})
        out.update({p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ALL)
def test_round_trip_inference_gives_the_original_outputs(bundle, exported, tmp_path):
    results = {}
    for label, root in (("original", BUNDLES / bundle), ("exported", exported[bundle])):
        out = tmp_path / label
        workflow = bundle_workflow(root, ["inference.json"], "infer", output_dir=str(out), progress_bar=False)
        workflow.initialize()
        try:
            workflow.run()
        finally:
            workflow.finalize()
        results[label] = _outputs(out)
    original, copy = results["original"], results["exported"]
    assert original and sorted(original) == sorted(copy)
    if bundle == "em_selfsupervised_pretraining":  # scores its pretext per file: pretext_scores.json and a picture
        assert any(n.endswith(":mse") for n in original) and any(n.endswith("_reconstruction.png") for n in original)
    else:
        assert any(n.endswith("_prob.tif") for n in original) and any(n.endswith("_labels.tif") for n in original)
    for name, expected in original.items():
        got = copy[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        if name.endswith("_prob.tif") or name.endswith("mse"):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ALL)
def test_exported_bundle_passes_the_model_zoo_checks_offline(bundle, exported, tmp_path):
    root = exported[bundle]
    mzc.check_files_version_and_metadata_schema(root, tmp_path, schema=root / "eval" / "schema.json")
    if has_network(root):
        mzc.check_net_in_out(root)
        mzc.check_torchscript_matches_eager(root, root / "models" / "model.ts")  # the shipped model.ts
    else:
        mzc.check_no_network_rule(root, tmp_path)
        assert not (root / "models" / "model.ts").exists()


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ALL)
def test_exported_configs_stay_inside_the_bundle(bundle, exported, monkeypatch):
    root = exported[bundle]
    for path in sorted((root / "configs").iterdir()):
        text = path.read_text()
        assert str(ROOT) not in text and "data_root(" not in text and "/.." not in text, path
        if DATA_DIR_ENV not in text or path.suffix != ".json":
            continue
        config = json.loads(text)
        base = [] if "imports" in config else [b for b in ("train.json", "inference.json") if (path.parent / b).is_file()][:1]
        parser = ConfigParser()
        parser.read_config([str(path.parent / b) for b in base] + [str(path)])
        parser["bundle_root"] = str(root)
        for key in (k for k, v in config.items() if isinstance(v, str) and DATA_DIR_ENV in v):
            monkeypatch.delenv(DATA_DIR_ENV, raising=False)
            assert str(parser.get_parsed_content(key, lazy=False)).startswith(str(root / "data")), (path, key)
            monkeypatch.setenv(DATA_DIR_ENV, "/data/elsewhere")
            assert str(parser.get_parsed_content(key, lazy=False)).startswith("/data/elsewhere"), (path, key)


@pytest.mark.slow
def test_monai_bundle_download_from_a_file_url_then_run_from_the_command_line(exported, tmp_path):
    """``monai.bundle download --url file://...`` unpacks it; ``monai.bundle run`` finds the copy's own root."""
    name = "isbi2012_em_membrane_segmentation"
    zip_path = next(exported[name].parents[1].glob(f"zips/{name}.zip"))
    monai_download(name=name, url=zip_path.as_uri(), bundle_dir=str(tmp_path / "downloaded"), progress=False)
    root = tmp_path / "downloaded" / name
    assert (root / "models" / "model.ts").is_file()
    configs = root / "configs"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "inference.json"),
           "--meta_file", str(configs / "metadata.json"), "--logging_file", str(configs / "logging.conf"),
           "--tta_transforms", "1", "--progress_bar", "False"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != DATA_DIR_ENV}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the default output_dir is BUNDLE_ROOT/eval: the copy found its own folder, not this repository's
    assert sorted(p.name for p in (root / "eval").glob("*.tif")) == ["phantom_2024_labels.tif", "phantom_2024_prob.tif"]
