"""Finding the checkpoint to resume from."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["latest_checkpoint", "TimeLimitHandler"]

_EPOCH = re.compile(r"epoch=(\d+)")


def latest_checkpoint(folder: str | os.PathLike, prefix: str = "checkpoint") -> str | None:
    """The newest ``PREFIX*_epoch=N.pt`` written by a MONAI ``CheckpointSaver``, or ``None``.

    Args:
        folder: checkpoint folder (missing folder -> ``None``).
        prefix: file-name prefix given to the ``CheckpointSaver``.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for n in (2, 10): _ = (d / f"checkpoint_epoch={n}.pt").write_bytes(b"")
        >>> pathlib.Path(latest_checkpoint(d)).name
        'checkpoint_epoch=10.pt'
    """
    root = Path(folder)
    if not root.is_dir():
        return None
    found = []
    for path in root.glob(f"{prefix}*.pt"):
        match = _EPOCH.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return str(max(found)[1]) if found else None


class TimeLimitHandler:
    """Stop the trainer cleanly once ``limit_s`` seconds have passed (``None`` = no limit).

    Wraps ``ignite.handlers.TimeLimit`` so it can be listed in MONAI ``train_handlers``
    (which calls ``attach(engine)``); the trainer then completes normally, so the final
    checkpoint and the MLflow run are closed as usual.

    Example:
        >>> TimeLimitHandler(None).limit_s is None
        True
    """

    def __init__(self, limit_s: float | None) -> None:
        if limit_s is not None and limit_s <= 0:
            raise ValueError(f"limit_s must be positive or None, got {limit_s}")
        self.limit_s = limit_s

    def attach(self, engine) -> None:
        if self.limit_s is None:
            return
        from ignite.engine import Events
        from ignite.handlers import TimeLimit

        engine.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(self.limit_s))
