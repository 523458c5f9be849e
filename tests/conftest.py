"""Shared fixtures: where the real data lives, phantom data sets, the bundle paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"


def data_root() -> Path:
    """``$CSEG_DATA_DIR`` or ``../shared/data`` next to the project root."""
    return Path(os.environ.get("CSEG_DATA_DIR", ROOT.parent / "shared" / "data"))


def require_data(*parts: str) -> Path:
    """The path of a real data set, or skip the test with a clear reason."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (set CSEG_DATA_DIR or put the shared data in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def phantom_isbi(tmp_path_factory) -> Path:
    """A tiny ISBI-style phantom data set: 6 labelled 128x128 slices and 2 test slices."""
    from cseg_monai.data.phantom import write_phantom_dataset

    out = tmp_path_factory.mktemp("phantom") / "isbi"
    write_phantom_dataset(out, n_train=6, n_test=2, size=128, seed=3)
    return out


def error_chain(excinfo) -> str:
    """Every message of an exception's cause chain, one per line (MONAI wraps config and
    transform errors in ``RuntimeError``; the message naming the file is further down)."""
    parts, err, seen = [], excinfo.value, set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        parts.append(str(err))
        err = err.__cause__ or err.__context__
    return "\n".join(parts)


def bundle_workflow(configs_dir: Path, configs: list[str], workflow_type: str, **override):
    """A MONAI ``ConfigWorkflow`` over ``configs`` (file names in ``configs_dir``, merged in order)."""
    from monai.bundle import ConfigWorkflow

    files = [str(configs_dir / c) for c in configs]
    return ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        logging_file=str(configs_dir / "logging.conf"),
        workflow_type=workflow_type,
        **override,
    )
