"""The test tree mirrors the package: ``cseg_monai/a/b.py`` is tested in ``tests/a/test_b.py``."""

from __future__ import annotations

from pathlib import Path

import cseg_monai

PACKAGE = Path(cseg_monai.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent


def test_every_module_has_its_test_file():
    missing = []
    for module in sorted(PACKAGE.rglob("*.py")):
        if module.name == "__init__.py" or module.name.startswith("_"):
            continue  # packages' re-exports and private helpers are tested through their users
        rel = module.relative_to(PACKAGE)
        expected = TESTS / rel.parent / f"test_{rel.stem}.py"
        if not expected.is_file():
            missing.append(f"{rel} -> {expected.relative_to(TESTS.parent)}")
    assert not missing, "modules without a test file:\n" + "\n".join(missing)
