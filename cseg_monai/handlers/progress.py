"""A tqdm progress bar that MONAI engines can take in their handler lists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ProgressBarHandler"]


class ProgressBarHandler:
    """Ignite's tqdm ``ProgressBar`` with an ``attach(engine)`` that MONAI handler lists call.

    Args:
        output_transform: maps ``engine.state.output`` to a number or a dict of numbers shown
            beside the bar (e.g. the loss); ``None`` shows nothing.
        persist: keep the finished bar on screen.
        desc: text before the bar.

    Example:
        >>> ProgressBarHandler(persist=True).persist
        True
    """

    def __init__(
        self, output_transform: Callable[[Any], Any] | None = None, persist: bool = False, desc: str | None = None
    ) -> None:
        self.output_transform = output_transform
        self.persist = persist
        self.desc = desc

    def attach(self, engine) -> None:
        from ignite.handlers import ProgressBar

        kwargs = {} if self.desc is None else {"desc": self.desc}
        ProgressBar(persist=self.persist, **kwargs).attach(engine, output_transform=self.output_transform)
