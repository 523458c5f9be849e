"""Where the real data sets live: ``$CSEG_DATA_DIR``, else ``../shared/data`` beside the checkout.

Bundle configs, scripts and tests all ask :func:`data_root`; nothing else spells the default.

Example:
    >>> import os
    >>> os.environ["CSEG_DATA_DIR"] = "/data/em"
    >>> str(data_root("isbi2012"))
    '/data/em/isbi2012'
    >>> del os.environ["CSEG_DATA_DIR"]
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "data_root"]

#: The environment variable that names the folder holding the data sets.
DATA_DIR_ENV = "CSEG_DATA_DIR"

# cseg_monai/common/paths.py -> the checkout (the folder holding cseg_monai/) -> ../shared/data
_CHECKOUT = Path(__file__).resolve().parents[2]


def data_root(name: str | None = None) -> Path:
    """The data folder, or the folder of the data set ``name`` inside it.

    ``$CSEG_DATA_DIR`` when it is set (and not empty); otherwise ``shared/data`` beside the
    folder that holds the ``cseg_monai`` package (the project's layout: ``../shared/data``
    from the project root). The path need not exist: readers report a missing folder with
    its name.

    Args:
        name: a data set's folder name (e.g. ``"isbi2012"``), or ``None`` for the root.

    Returns:
        The absolute path.
    """
    if name is not None and (not isinstance(name, str) or not name or os.path.isabs(name)):
        raise ValueError(f"name must be a relative folder name such as 'isbi2012', got {name!r}")
    env = os.environ.get(DATA_DIR_ENV, "")
    root = Path(env).expanduser() if env else _CHECKOUT.parent / "shared" / "data"
    root = root.resolve() if root.exists() else root.absolute()
    return root / name if name else root
