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

Exported bundles (``cseg bundle export``)
-----------------------------------------
``--exported PATH [PATH ...]`` checks exported copies instead of ``bundles/``: each PATH is a zip
written by ``cseg bundle export`` (unpacked with ``cseg_monai.workflows.import_bundle`` into the
temporary folder, as ``monai.bundle download`` would) or an unpacked bundle folder (named after
the bundle). The copy goes to ``models/NAME`` as it is; its own ``eval/schema.json`` (the export
ships one) is used, ours only where it has none. The same rule decides the exemptions::

    .venv/bin/cseg bundle export isbi2012_em_membrane_segmentation /tmp/x/
    .venv/bin/python scripts/model_zoo_verify.py --model_zoo /tmp/model-zoo --exported /tmp/x/*.zip
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# the rule (has_network, on the inference config's NET_ID) lives in the package, which the export uses too
from cseg_monai.workflows.bundle_export import EXCLUDED, NET_ID, has_network, import_bundle, inference_config

__all__ = ["NET_ID", "NO_NETWORK_EXCLUSIONS", "has_network", "inference_config", "layout", "main", "no_network_problems", "verify"]

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"
SCHEMA = ROOT / "configs" / "metadata_schema.json"

#: the model zoo's exclusion lists (in ci/bundle_custom_data.py) a network-less bundle is added to
NO_NETWORK_EXCLUSIONS = (
    "exclude_verify_preferred_files_list",
    "exclude_verify_shape_list",
    "exclude_verify_torchscript_list",
)
#: git-ignored output folders of a bundle, not copied (the same list ``cseg bundle export`` leaves out)
IGNORED = EXCLUDED


def no_network_problems(bundle_dir: Path) -> list[str]:
    """What must hold for a network-less bundle (checked instead of the exempted preferred-files step)."""
    problems = []
    if inference_config(bundle_dir) is None:
        problems.append("no configs/inference.json (or .yaml/.yml)")
    if (bundle_dir / "models" / "model.pt").exists():
        problems.append(f"models/model.pt exists but the inference config defines no {NET_ID!r}")
    return problems


def layout(model_zoo: Path, bundle: str, root: Path, source: Path | None = None) -> list[str]:
    """Lay ``bundle`` out under ``root`` as the model zoo's CI does; returns the exemptions applied.

    ``source`` is the bundle folder to copy (default ``bundles/NAME``); an exported copy keeps its
    own ``eval/schema.json``.
    """
    shutil.copytree(model_zoo / "ci", root / "ci", ignore=shutil.ignore_patterns("__pycache__"))
    source = BUNDLES / bundle if source is None else source
    target = root / "models" / bundle
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*IGNORED))
    (target / "eval").mkdir()
    own_schema = source / "eval" / "schema.json"
    shutil.copyfile(own_schema if own_schema.is_file() else SCHEMA, target / "eval" / "schema.json")
    (root / "models" / "model_info.json").write_text("{}\n")
    if has_network(target):
        return []
    custom = root / "ci" / "bundle_custom_data.py"
    lines = ["", "", "# appended by cseg-monai scripts/model_zoo_verify.py: a bundle without a network"]
    lines += [f"{name}.append({bundle!r})" for name in NO_NETWORK_EXCLUSIONS]
    with custom.open("a") as f:
        f.write("\n".join(lines) + "\n")
    return list(NO_NETWORK_EXCLUSIONS)


def unpack(path: Path, into: Path) -> Path:
    """The bundle folder of an exported zip (unpacked into ``into``) or of an unpacked folder."""
    if path.is_file():
        return import_bundle(path, into)
    if not (path / "configs" / "metadata.json").is_file():
        raise ValueError(f"{path}: neither a bundle zip nor a bundle folder (no configs/metadata.json)")
    return path


def verify(
    model_zoo: Path, bundle: str, python: str, keep: bool, verbose: bool, source: Path | None = None, label: str = ""
) -> bool:
    """Run ``verify_bundle.py -m full`` on one bundle (``bundles/NAME``, or the folder ``source``); print PASS/FAIL.

    ``label`` names where ``source`` came from in the printed line (e.g. the exported zip).
    """
    root = Path(tempfile.mkdtemp(prefix=f"mz_{bundle}_"))
    try:
        src = BUNDLES / bundle if source is None else source
        what = "" if source is None else f" [{label or source}]"
        problems = [] if has_network(src) else no_network_problems(src)
        if problems:
            print(f"FAIL {bundle}{what}: " + "; ".join(problems))
            return False
        exempt = layout(model_zoo, bundle, root, source)
        cmd = [python, "ci/verify_bundle.py", "-b", bundle, "-p", "models", "-m", "full"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log = proc.stdout
        (root / "verify.log").write_text(log)
        note = f" (no network: {', '.join(exempt)})" if exempt else ""
        if verbose:
            print(log)
        if proc.returncode == 0:
            print(f"PASS {bundle}{what}{note}")
            return True
        tail = "\n".join("    " + line for line in log.strip().splitlines()[-25:])
        print(f"FAIL {bundle}{what}{note}: `{' '.join(cmd)}` in {root} exited {proc.returncode}\n{tail}")
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
    parser.add_argument("--exported", nargs="+", type=Path, metavar="PATH",
                        help="check exported bundles instead: zips from `cseg bundle export`, or unpacked bundle folders")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run verify_bundle.py with")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (with verify.log)")
    parser.add_argument("--verbose", action="store_true", help="print the whole verify_bundle.py log")
    args = parser.parse_args(argv)
    model_zoo = args.model_zoo.resolve()
    if not (model_zoo / "ci" / "verify_bundle.py").is_file():
        parser.error(f"{model_zoo} has no ci/verify_bundle.py (git clone https://github.com/Project-MONAI/model-zoo)")
    if args.exported:
        if args.bundles:
            parser.error("give bundle names or --exported paths, not both")
        missing = [str(p) for p in args.exported if not p.exists()]
        if missing:
            parser.error(f"no such exported bundle: {missing}")
        with tempfile.TemporaryDirectory(prefix="mz_unpacked_") as unpacked:
            results = {}
            for i, path in enumerate(args.exported):
                try:
                    folder = unpack(path.resolve(), Path(unpacked) / str(i))
                except ValueError as err:
                    print(f"FAIL {path}: {err}")
                    results[str(path)] = False
                    continue
                results[f"{folder.name} [{path}]"] = verify(model_zoo, folder.name, args.python, args.keep, args.verbose, folder, str(path))
    else:
        names = args.bundles or sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())
        unknown = [n for n in names if not (BUNDLES / n / "configs" / "metadata.json").is_file()]
        if unknown:
            parser.error(f"unknown bundles {unknown}; known: {sorted(p.name for p in BUNDLES.iterdir() if p.is_dir())}")
        results = {name: verify(model_zoo, name, args.python, args.keep, args.verbose) for name in names}
    failed = [n for n, ok in results.items() if not ok]
    kind = "exported bundles" if args.exported else "bundles"
    summary = f"{len(results) - len(failed)}/{len(results)} {kind} pass verify_bundle.py -m full"
    print(summary + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
