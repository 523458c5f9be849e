#!/usr/bin/env python
"""Record each bundle's version and the SHA-256 of its configs and weights (``tests/bundles/bundle_versions.json``).

A bundle whose configs or weights change must get a new version (and a changelog entry for
it), as the model zoo asks of a changed bundle. The record makes that testable:
``tests/workflows/test_bundle_export.py`` recomputes every bundle's digest
(:func:`cseg_monai.workflows.bundle_export.bundle_digest`: every file under ``configs/`` and
``models/``, ``metadata.json`` without ``version`` and ``changelog``) and fails when it differs
from the record while the version is the recorded one, or when the record is stale.

After changing a bundle: bump ``version`` in its ``configs/metadata.json``, add a ``changelog``
entry for the new version, then, from the repository root::

    .venv/bin/python scripts/record_bundle_versions.py            # check, then write the record
    .venv/bin/python scripts/record_bundle_versions.py --check    # only report (exit 1 if out of date)

Writing refuses (exit 1, nothing written) while a bundle changed without a new, higher version
or lacks a changelog entry for its version; ``--force`` records anyway (a deliberate re-release).
Without a record file, the first run writes one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

from cseg_monai.workflows import bundles_dir, list_bundles
from cseg_monai.workflows.bundle_export import bundle_digest

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "bundles" / "bundle_versions.json"
COMMAND = ".venv/bin/python scripts/record_bundle_versions.py"


def current() -> dict[str, dict[str, str]]:
    """``{bundle: {"version": ..., "sha256": ...}}`` for every bundle under ``bundles/``."""
    out = {}
    for name in list_bundles():
        meta = json.loads((bundles_dir() / name / "configs" / "metadata.json").read_text())
        out[name] = {"version": str(meta["version"]), "sha256": bundle_digest(name)}
    return out


def load_record(path: Path = RECORD) -> dict[str, dict[str, str]]:
    """The recorded ``{bundle: {"version", "sha256"}}``; raises ``FileNotFoundError`` if none was recorded."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: record it with `{COMMAND}`")
    try:
        return json.loads(path.read_text())["bundles"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{path}: not a bundle-version record ({err})") from err


def _version(text: str, where: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion as err:
        raise ValueError(f"{where}: version {text!r} is not a version number") from err


def problems(record: dict[str, dict[str, str]], now: dict[str, dict[str, str]] | None = None) -> tuple[list[str], list[str]]:
    """``(must_bump, stale)``: bundles that changed without a new version, and records to rewrite.

    ``must_bump`` also lists a version without a changelog entry, or one lower than the record.
    ``stale`` lists bundles whose (correctly bumped) version, or whose presence, differs from the record.
    """
    now = current() if now is None else now
    must_bump, stale = [], []
    for name, entry in now.items():
        meta_file = bundles_dir() / name / "configs" / "metadata.json"
        meta = json.loads(meta_file.read_text())
        if entry["version"] not in meta.get("changelog", {}):
            must_bump.append(f"{name}: {meta_file} has no changelog entry for its version {entry['version']}")
        old = record.get(name)
        if old is None:
            stale.append(f"{name}: not in the record (a new bundle)")
            continue
        if entry == old:
            continue
        if entry["version"] == old["version"]:
            must_bump.append(
                f"{name}: its configs or weights changed (sha256 {old['sha256'][:12]}... -> {entry['sha256'][:12]}...) "
                f"but its version is still {old['version']}: bump `version` in {meta_file}, add a `changelog` entry "
                f"for the new version, and re-record with `{COMMAND}`"
            )
        elif _version(entry["version"], str(meta_file)) < _version(old["version"], str(RECORD)):
            must_bump.append(f"{name}: version {entry['version']} is lower than the recorded {old['version']}")
        else:
            stale.append(f"{name}: version {old['version']} -> {entry['version']}: re-record with `{COMMAND}`")
    stale += [f"{name}: recorded but no longer under bundles/" for name in sorted(set(record) - set(now))]
    return must_bump, stale


def write_record(now: dict[str, dict[str, str]], path: Path = RECORD) -> None:
    """Write the record atomically (a temporary file in the same folder, then a rename)."""
    content = {
        "about": (
            "per bundle: configs/metadata.json version and the SHA-256 of configs/ and models/ "
            "(cseg_monai.workflows.bundle_export.bundle_digest); written by " + COMMAND
        ),
        "bundles": now,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(content, indent=4, sort_keys=True) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if the record is out of date")
    parser.add_argument("--force", action="store_true", help="record even where a bundle changed without a new version")
    parser.add_argument("--record", type=Path, default=RECORD, help=f"the record file (default {RECORD.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    now = current()
    try:
        record = load_record(args.record)
    except FileNotFoundError:
        record = {}
    must_bump, stale = problems(record, now)
    for line in must_bump:
        print(f"BUMP  {line}")
    for line in stale:
        print(f"STALE {line}")
    if args.check:
        ok = not must_bump and not stale
        print("record up to date" if ok else "record out of date")
        return 0 if ok else 1
    if must_bump and not args.force:
        print(f"nothing written: fix the above (or pass --force to record anyway) and run `{COMMAND}` again")
        return 1
    write_record(now, args.record)
    for name, entry in now.items():
        print(f"{name}  v{entry['version']}  {entry['sha256']}")
    print(f"recorded {len(now)} bundles in {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
