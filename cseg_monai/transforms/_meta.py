"""Small helpers shared by the transforms (file names for error messages)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def source_name(data: Mapping[str, Any], key: str) -> str:
    """Return the file an item came from (for error messages), or ``<key>`` when unknown.

    Example:
        >>> source_name({"image": 1}, "image")
        "<'image' (no file name)>"
    """
    value = data.get(key)
    meta = getattr(value, "meta", None)
    if meta is None:
        meta = data.get(f"{key}_meta_dict", {})
    name = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    if isinstance(name, (list, tuple)):
        name = name[0] if name else None
    return str(name) if name else f"<{key!r} (no file name)>"
