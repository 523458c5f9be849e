#!/usr/bin/env python
"""Run the MONAI model zoo's own bundle check, ``ci/verify_bundle.py -m full``, on our bundles.

Get the model zoo (any recent checkout, or an extracted copy that contains ``ci/``)::

    git clone https://github.com/Project-MONAI/model-zoo /tmp/model-zoo

then, from the repository root::

    .venv/bin/python scripts/model_zoo_verify.py --model_zoo /tmp/model-zoo            # all bundles
    .venv/bin/python scripts/model_zoo_verify.py --model_zoo /tmp/model-zoo isbi2012_em_membrane_segmentation

For each bundle this builds, in a fresh temporary folder, the layout the model zoo's CI uses:

* ``ci/``: a copy of the model zoo's ``ci/`` folder (``verify_bundle.py`` imports its
  ``bundle_custom_data.py`` and ``utils.py``); nothing of it is copied into this repository;
* ``models/NAME``: a copy of ``bundles/NAME`` (without the git-ignored output folders
  ``eval/``, ``outputs/``, ``mlruns/``);
* ``models/NAME/eval/schema.json``: our ``configs/metadata_schema.json``. ``verify_metadata``
  downloads the schema named by the metadata's ``schema`` field to exactly this path unless
  the file is already there, so with it in place nothing is downloaded (the check runs offline);
* ``models/model_info.json``: ``{}`` (no released versions, so any version number is new);

and runs ``PYTHON ci/verify_bundle.py -b NAME -p models -m full`` there (the same command the
model zoo's CI runs). It prints one ``PASS``/``FAIL`` line per bundle (with the tail of the log
of a failure) and exits with status 1 if any bundle fails.

Bundles without a network (the model zoo's exclusion lists)
------------------------------------------------------------
The model zoo exempts a bundle from a step by listing its name in ``ci/bundle_custom_data.py``:
``exclude_verify_preferred_files_list`` (no ``models/model.pt``), ``exclude_verify_shape_list``
(no ``verify_net_in_out``) and ``exclude_verify_torchscript_list`` (no ``ckpt_export``). Our rule:

    A bundle has no network if and only if its inference config (``configs/inference.json``,
    ``.yaml`` or ``.yml``) defines no ``network_def`` -- the id that ``verify_bundle.py`` uses
    for ``verify_net_in_out`` and ``ckpt_export``.

For such a bundle (today only ``em_densecrf_postprocessing``) this script appends its name to
exactly those three lists in the *temporary copy* of ``bundle_custom_data.py``, and first checks
itself what the skipped preferred-files step would have checked and what the rule implies:
the inference config exists, and there is no ``models/model.pt`` (weights without a network
mean the rule misclassified the bundle). Every other step (necessary files, version and
changelog, metadata against the schema, bundle properties) runs unchanged. A failed bundle's
temporary folder is kept (its ``verify.log`` holds the whole output); ``--keep`` keeps all. A bundle with a
``network_def`` gets no exemption at all. ``tests/bundles/test_model_zoo_checks.py`` runs the
same checks through MONAI's API without a model-zoo checkout, with this same rule.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"
SCHEMA = ROOT / "configs" / "metadata_schema.json"

#: the model zoo's exclusion lists (in ci/bundle_custom_data.py) a network-less bundle is added to
NO_NETWORK_EXCLUSIONS = (
    "exclude_verify_preferred_files_list",
    "exclude_verify_shape_list",
    "exclude_verify_torchscript_list",
)
#: the id of the network in a bundle's inference config (verify_bundle.py's ``_get_net_id``)
NET_ID = "network_def"
#: git-ignored output folders of a bundle, not copied
IGNORED = ("eval", "outputs", "mlruns", "__pycache__")


def inference_config(bundle_dir: Path) -> Path | None:
    """The bundle's ``configs/inference.{json,yaml,yml}`` (as verify_bundle.py finds it), or ``None``."""
    for suffix in ("json", "yaml", "yml"):
        path = bundle_dir / "configs" / f"inference.{suffix}"
        if path.is_file():
            return path
    return None


def has_network(bundle_dir: Path) -> bool:
    """The rule: a bundle has a network iff its inference config defines ``network_def``."""
    config = inference_config(bundle_dir)
    if config is None:
        raise ValueError(f"{bundle_dir.name}: no configs/inference.json (or .yaml/.yml)")
    from monai.bundle import ConfigParser

    return NET_ID in ConfigParser.load_config_file(str(config))


def no_network_problems(bundle_dir: Path) -> list[str]:
    """What must hold for a network-less bundle (checked instead of the exempted preferred-files step)."""
    problems = []
    if inference_config(bundle_dir) is None:
        problems.append("no configs/inference.json (or .yaml/.yml)")
    if (bundle_dir / "models" / "model.pt").exists():
        problems.append(f"models/model.pt exists but the inference config defines no {NET_ID!r}")
    return problems


def layout(model_zoo: Path, bundle: str, root: Path) -> list[str]:
    """Lay ``bundle`` out under ``root`` as the model zoo's CI does; returns the exemptions applied."""
    shutil.copytree(model_zoo / "ci", root / "ci", ignore=shutil.ignore_patterns("__pycache__"))
    target = root / "models" / bundle
    shutil.copytree(BUNDLES / bundle, target, ignore=shutil.ignore_patterns(*IGNORED))
    (target / "eval").mkdir()
    shutil.copyfile(SCHEMA, target / "eval" / "schema.json")
    (root / "models" / "model_info.json").write_text("{}\n")
    if has_network(target):
        return []
    custom = root / "ci" / "bundle_custom_data.py"
    lines = ["", "", "# appended by cseg-monai scripts/model_zoo_verify.py: a bundle without a network"]
    lines += [f"{name}.append({bundle!r})" for name in NO_NETWORK_EXCLUSIONS]
    with custom.open("a") as f:
        f.write("\n".join(lines) + "\n")
    return list(NO_NETWORK_EXCLUSIONS)


def verify(model_zoo: Path, bundle: str, python: str, keep: bool, verbose: bool) -> bool:
    root = Path(tempfile.mkdtemp(prefix=f"mz_{bundle}_"))
    try:
        problems = [] if has_network(BUNDLES / bundle) else no_network_problems(BUNDLES / bundle)
        if problems:
            print(f"FAIL {bundle}: " + "; ".join(problems))
            return False
        exempt = layout(model_zoo, bundle, root)
        cmd = [python, "ci/verify_bundle.py", "-b", bundle, "-p", "models", "-m", "full"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log = proc.stdout
        (root / "verify.log").write_text(log)
        note = f" (no network: {', '.join(exempt)})" if exempt else ""
        if verbose:
            print(log)
        if proc.returncode == 0:
            print(f"PASS {bundle}{note}")
            return True
        tail = "\n".join("    " + line for line in log.strip().splitlines()[-25:])
        print(f"FAIL {bundle}{note}: `{' '.join(cmd)}` in {root} exited {proc.returncode}\n{tail}")
        keep = True  # a failure's folder (with verify.log) stays for inspection
        return False
    finally:
        if keep:
            print(f"     kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_zoo", required=True, type=Path, help="model-zoo checkout (with ci/verify_bundle.py)")
    parser.add_argument("bundles", nargs="*", help="bundle names (default: every folder under bundles/)")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run verify_bundle.py with")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (with verify.log)")
    parser.add_argument("--verbose", action="store_true", help="print the whole verify_bundle.py log")
    args = parser.parse_args(argv)
    model_zoo = args.model_zoo.resolve()
    if not (model_zoo / "ci" / "verify_bundle.py").is_file():
        parser.error(f"{model_zoo} has no ci/verify_bundle.py (git clone https://github.com/Project-MONAI/model-zoo)")
    names = args.bundles or sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())
    unknown = [n for n in names if not (BUNDLES / n / "configs" / "metadata.json").is_file()]
    if unknown:
        parser.error(f"unknown bundles {unknown}; known: {sorted(p.name for p in BUNDLES.iterdir() if p.is_dir())}")
    results = {name: verify(model_zoo, name, args.python, args.keep, args.verbose) for name in names}
    failed = [n for n, ok in results.items() if not ok]
    summary = f"{len(results) - len(failed)}/{len(results)} bundles pass verify_bundle.py -m full"
    print(summary + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
