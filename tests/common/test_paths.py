"""data_root: the environment variable first, else shared/data beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

import cseg_monai
from cseg_monai.common.paths import DATA_DIR_ENV, data_root


def test_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert data_root() == tmp_path.resolve() and data_root("isbi2012") == tmp_path.resolve() / "isbi2012"


def test_default_is_shared_data_beside_the_checkout(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    checkout = Path(cseg_monai.__file__).resolve().parents[1]
    assert data_root() == (checkout.parent / "shared" / "data").resolve()
    monkeypatch.setenv(DATA_DIR_ENV, "")  # empty counts as unset
    assert data_root("plantseg").name == "plantseg"


@pytest.mark.parametrize("bad", ["", "/abs/path", 3])
def test_bad_names(bad):
    with pytest.raises(ValueError, match="relative folder name"):
        data_root(bad)
