#!/usr/bin/env python
"""Keep every trained bundle's ``train.json`` in step with ``configs/train_common.json``.

``configs/train_common.json`` is the one source of the engine glue all trained bundles share
(see :mod:`cseg_monai.workflows.shared_config` for why each bundle still holds a copy). Edit
it there, then, from the repository root::

    .venv/bin/python scripts/sync_shared_config.py            # write it into every bundle's train.json
    .venv/bin/python scripts/sync_shared_config.py --check    # only report (exit 1 where a bundle differs)
    .venv/bin/python scripts/sync_shared_config.py --bundle my_new_bundle   # one bundle (e.g. a new one)

A bundle whose ``train.json`` changed needs a new version (``scripts/record_bundle_versions.py``).
"""

from __future__ import annotations

import argparse
import sys

from cseg_monai.workflows import bundles_dir, list_bundles
from cseg_monai.workflows.shared_config import shared_config_drift, sync_shared_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report only; exit 1 where a bundle differs")
    parser.add_argument("--bundle", action="append", default=None, help="only this bundle (repeatable)")
    args = parser.parse_args(argv)
    names = args.bundle or [n for n in list_bundles() if (bundles_dir() / n / "configs" / "train.json").is_file()]
    status = 0
    for name in names:
        train = bundles_dir() / name / "configs" / "train.json"
        if args.check:
            drift = shared_config_drift(train)
            print(f"{name}: " + ("in step" if not drift else f"differs at {', '.join(drift)}"))
            status |= bool(drift)
        else:
            changed = sync_shared_config(train)
            print(f"{name}: " + ("in step" if not changed else f"wrote {', '.join(changed)}"))
    return status


if __name__ == "__main__":
    sys.exit(main())
