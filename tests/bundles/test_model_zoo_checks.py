"""The MONAI model zoo's bundle checks (``ci/verify_bundle.py -m full``), offline, through MONAI's API.

``scripts/model_zoo_verify.py`` runs the model zoo's own script on a checkout of it; this test runs
the same steps without one, for every bundle under ``bundles/``:

* necessary files (``configs/metadata.json``, ``LICENSE``), version listed in the changelog;
* ``monai.bundle.verify_metadata`` against ``configs/metadata_schema.json`` (copied to where
  ``verify_metadata`` would download it, so nothing is downloaded);
* for bundles with a network: ``models/model.pt`` is there, ``verify_net_in_out``, and
  ``ckpt_export`` (``torch.jit.script``) to a temporary ``model.ts`` that loads with
  ``torch.jit.load`` and computes what the eager net with the checkpoint computes, on the
  ``network_data_format`` input shape;
* for bundles without one, the rule of ``scripts/model_zoo_verify.py`` (imported from there):
  no ``network_def`` in the inference config, hence no weights and the network steps exempted,
  as the model zoo exempts bundles through its ``ci/bundle_custom_data.py`` lists.

The checks are functions of a bundle folder (``check_*``), so that
``tests/workflows/test_bundle_export.py`` runs them on an unpacked export too.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from conftest import BUNDLES, ROOT

_spec = importlib.util.spec_from_file_location("model_zoo_verify", ROOT / "scripts" / "model_zoo_verify.py")
mzv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mzv)

ALL = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())
WITH_NET = [b for b in ALL if mzv.has_network(BUNDLES / b)]
WITHOUT_NET = [b for b in ALL if b not in WITH_NET]
NET_ID = mzv.NET_ID

# verify_metadata warns that the (local, copied) schema has no hash to check
pytestmark = pytest.mark.filterwarnings("ignore:No hash value provided:UserWarning")


def meta_of(root: Path) -> dict:
    """``configs/metadata.json`` of the bundle folder ``root``."""
    return json.loads((root / "configs" / "metadata.json").read_text())


def parser_of(root: Path) -> ConfigParser:
    """The inference config of bundle folder ``root``, with its metadata and ``bundle_root`` set."""
    parser = ConfigParser()
    parser.read_config(str(mzv.inference_config(root)))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser["bundle_root"] = str(root)
    return parser


def input_shape_of(root: Path) -> tuple[int, ...]:
    """``(1, C, *spatial)`` from ``network_data_format``, as verify_net_in_out and ckpt_export build it."""
    from monai.bundle.scripts import _get_fake_input_shape

    return tuple(_get_fake_input_shape(parser_of(root)))


# The checks, on any bundle folder (ours under bundles/, or an unpacked export: tests/workflows/test_bundle_export.py)


def check_files_version_and_metadata_schema(root: Path, tmp_path: Path, schema: Path | None = None) -> None:
    """Necessary files, the version in the changelog, and ``verify_metadata`` against ``schema`` (default ours)."""
    assert (root / "configs" / "metadata.json").is_file() and (root / "LICENSE").is_file()
    assert mzv.inference_config(root) is not None
    meta = meta_of(root)
    assert meta["version"] in meta["changelog"]
    # verify_bundle.py checks app properties only for bundles with supported_apps; this test does not
    assert "supported_apps" not in meta, "verify_bundle.py would check the app's properties: add that check here"
    target = tmp_path / "eval" / "schema.json"  # where verify_bundle.py puts it
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(schema or ROOT / "configs" / "metadata_schema.json", target)
    verify_metadata(meta_file=str(root / "configs" / "metadata.json"), filepath=str(target))


def check_no_network_rule(root: Path, tmp_path: Path) -> None:
    """A network-less bundle: no weights, ckpt_export finds no network, its docs give the rule."""
    assert mzv.no_network_problems(root) == []
    assert not (root / "models" / "model.pt").exists()
    # the exempted steps really have nothing to run on: even given a checkpoint, ckpt_export finds no network
    torch.save({}, tmp_path / "model.pt")
    with pytest.raises(KeyError, match=NET_ID):
        ckpt_export(
            net_id=NET_ID,
            config_file=str(mzv.inference_config(root)),
            bundle_root=str(root),
            ckpt_file=str(tmp_path / "model.pt"),
            filepath=str(tmp_path / "model.ts"),
        )
    assert not (tmp_path / "model.ts").exists()
    assert "exclude_verify_torchscript_list" in mzv.NO_NETWORK_EXCLUSIONS
    readme = (root / "docs" / "README.md").read_text()
    assert "## Model-zoo checks" in readme and "network_def" in readme


def check_net_in_out(root: Path) -> None:
    """``models/model.pt`` is there and ``verify_net_in_out`` passes."""
    assert (root / "models" / "model.pt").is_file()
    verify_net_in_out(
        net_id=NET_ID,
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(mzv.inference_config(root)),
        bundle_root=str(root),
        device="cpu",
    )


def check_torchscript_matches_eager(root: Path, ts_path: Path) -> None:
    """The TorchScript file loads, embeds the bundle's metadata and computes what the eager net with the weights does."""
    extra = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(ts_path), map_location="cpu", _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == meta_of(root)["version"]

    net = parser_of(root).get_parsed_content(NET_ID).cpu().eval()
    net.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True))
    torch.manual_seed(0)
    x = torch.rand(input_shape_of(root))
    with torch.no_grad():
        expected, got = net(x), scripted(x)
    out = meta_of(root)["network_data_format"]["outputs"]["pred"]
    assert got.shape[:2] == (1, out["num_channels"]) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def check_ckpt_export(root: Path, tmp_path: Path) -> None:
    """``ckpt_export`` to a temporary ``model.ts`` that loads and matches eager."""
    ts_path = tmp_path / "model.ts"
    ckpt_export(
        net_id=NET_ID,
        filepath=str(ts_path),
        ckpt_file=str(root / "models" / "model.pt"),
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(mzv.inference_config(root)),
        bundle_root=str(root),
    )
    check_torchscript_matches_eager(root, ts_path)


def test_the_bundles_and_which_have_a_network():
    assert len(ALL) == 7
    # guards the rule: a bundle that loses its network_def would silently be exempted from the network steps
    assert WITHOUT_NET == ["em_densecrf_postprocessing"]


@pytest.mark.parametrize("bundle", ALL)
def test_files_version_and_metadata_schema(bundle, tmp_path):
    check_files_version_and_metadata_schema(BUNDLES / bundle, tmp_path)


@pytest.mark.parametrize("bundle", WITHOUT_NET)
def test_no_network_rule(bundle, tmp_path):
    check_no_network_rule(BUNDLES / bundle, tmp_path)


@pytest.mark.parametrize("bundle", WITH_NET)
def test_verify_net_in_out(bundle):
    check_net_in_out(BUNDLES / bundle)


@pytest.mark.slow
@pytest.mark.parametrize("bundle", WITH_NET)
def test_ckpt_export_loads_and_matches_eager(bundle, tmp_path):
    check_ckpt_export(BUNDLES / bundle, tmp_path)
