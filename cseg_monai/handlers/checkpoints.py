"""Finding the checkpoint to resume from."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ignite.engine import Events

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
    """Stop the trainer cleanly once ``limit_s`` seconds have passed since it started.

    The check runs after every iteration; the trainer then completes normally, so the final
    checkpoint is written and the MLflow run is closed as usual. ``None`` means no limit.
    (Ignite's own ``TimeLimit`` takes whole seconds only and has no ``attach(engine)``,
    which MONAI handler lists call.)

    Args:
        limit_s: wall-clock budget in seconds, or ``None``.

    Example:
        >>> TimeLimitHandler(None).limit_s is None
        True
    """

    def __init__(self, limit_s: float | None) -> None:
        if limit_s is not None and not limit_s > 0:
            raise ValueError(f"limit_s must be positive or None, got {limit_s}")
        self.limit_s = None if limit_s is None else float(limit_s)
        self._start: float | None = None

    def attach(self, engine) -> None:
        if self.limit_s is None:
            return
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._check)

    def _started(self, engine) -> None:
        self._start = time.perf_counter()

    def _check(self, engine) -> None:
        if self._start is not None and time.perf_counter() - self._start > self.limit_s:
            engine.logger.info("time limit of %.0f s reached: stopping the training", self.limit_s)
            engine.terminate()
