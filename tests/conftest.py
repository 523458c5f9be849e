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
