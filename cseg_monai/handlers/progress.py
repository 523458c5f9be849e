"""Progress on the console: a tqdm bar per engine run, or one bar and a summary for a whole training."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from tqdm.auto import tqdm

__all__ = ["ProgressBarHandler", "RunProgressHandler"]


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
        kwargs = {} if self.desc is None else {"desc": self.desc}
        ProgressBar(persist=self.persist, **kwargs).attach(engine, output_transform=self.output_transform)


def _console_handlers(loggers: Sequence[logging.Logger]) -> list[logging.Handler]:
    """Stream handlers writing to a terminal stream (stdout/stderr) of ``loggers``."""
    found = []
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                if getattr(h, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                    found.append(h)
    return found


class RunProgressHandler:
    """One progress bar for a whole training run, a short summary at the end, the full log in a file.

    While the trainer runs, the console shows one tqdm bar over the epochs, with the last loss
    and the evaluator's key metric (last and best); the INFO lines that MONAI and Ignite print
    every epoch go to ``log_file`` only (the console keeps warnings and errors). When the run
    ends, a few lines say how it went and where the log is.

    Args:
        evaluator: the validation engine (``@validate#evaluator``) whose key metric is shown,
            or ``None``.
        log_file: where the full log goes (appended; its folder is created); ``None``: no file,
            and the console keeps its INFO lines.
        loss_transform: maps ``engine.state.output`` to the loss shown; default: the ``loss``
            of the first item.
        enabled: show the bar and quieten the console; ``False`` still writes ``log_file``.
        desc: text before the bar.

    Example:
        In ``train#handlers``::

            {"_target_": "cseg_monai.handlers.RunProgressHandler", "evaluator": "@validate#evaluator",
             "log_file": "$@output_dir + '/train.log'", "enabled": "@progress_bar"}
    """

    def __init__(
        self,
        evaluator: Any = None,
        log_file: str | os.PathLike | None = None,
        loss_transform: Callable[[Any], float] | None = None,
        enabled: bool = True,
        desc: str = "training",
    ) -> None:
        self.evaluator = evaluator
        self.log_file = None if log_file is None else Path(log_file)
        self.loss_transform = loss_transform or _first_loss
        self.enabled = bool(enabled)
        self.desc = desc
        self._bar: tqdm | None = None
        self._file_handler: logging.FileHandler | None = None
        self._quietened: list[tuple[logging.Handler, int]] = []
        self._start = 0.0
        self._loss: float | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)
        engine.add_event_handler(Events.COMPLETED, self._finished)
        engine.add_event_handler(Events.TERMINATE, self._finished)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._failed)

    # ------------------------------------------------------------------ events
    def _started(self, engine: Engine) -> None:
        self._start = time.perf_counter()
        # every logger that prints to the terminal: the root's handler (logging.conf), and those
        # MONAI and Ignite give their own loggers
        loggers = [logging.getLogger()] + [
            lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
        ]
        if self.log_file is not None and self._file_handler is None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._file_handler = logging.FileHandler(self.log_file, encoding="utf-8")
            self._file_handler.setLevel(logging.INFO)
            self._file_handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
            logging.getLogger().addHandler(self._file_handler)
            if logging.getLogger().getEffectiveLevel() > logging.INFO:
                logging.getLogger().setLevel(logging.INFO)
            if self.enabled:  # the file has every line: the console keeps warnings and errors
                for h in _console_handlers(loggers):
                    self._quietened.append((h, h.level))
                    h.setLevel(max(h.level, logging.WARNING))
        if self.enabled and self._bar is None:
            total = engine.state.max_epochs
            self._bar = tqdm(total=total, initial=engine.state.epoch, desc=self.desc, unit="epoch", dynamic_ncols=True)

    def _iteration(self, engine: Engine) -> None:
        try:
            self._loss = float(self.loss_transform(engine.state.output))
        except (TypeError, ValueError, KeyError, IndexError):
            self._loss = None

    def _metric_text(self) -> str:
        state = getattr(self.evaluator, "state", None)
        if state is None or not getattr(state, "metrics", None):
            return ""
        name = getattr(state, "key_metric_name", None) or next(iter(state.metrics))
        if name not in state.metrics:
            return ""
        text = f"{name} {float(state.metrics[name]):.4f}"
        best, best_epoch = getattr(state, "best_metric", None), getattr(state, "best_metric_epoch", -1)
        if best is not None and best_epoch is not None and best_epoch >= 0:
            text += f" (best {float(best):.4f} @ {best_epoch})"
        return text

    def _epoch(self, engine: Engine) -> None:
        if self._bar is None:
            return
        parts = [] if self._loss is None else [f"loss {self._loss:.4f}"]
        metric = self._metric_text()
        if metric:
            parts.append(metric)
        self._bar.set_postfix_str(", ".join(parts), refresh=False)
        self._bar.update(engine.state.epoch - self._bar.n)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        for h, level in self._quietened:
            h.setLevel(level)
        self._quietened = []
        if self._file_handler is not None:
            logging.getLogger().removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None

    def summary(self, engine: Engine) -> str:
        """The closing lines: epochs and time, the last loss, the key metric, the log file."""
        minutes = (time.perf_counter() - self._start) / 60
        lines = [f"{self.desc}: {engine.state.epoch} of {engine.state.max_epochs} epochs in {minutes:.1f} min"]
        if self._loss is not None:
            lines.append(f"  last loss: {self._loss:.4f}")
        metric = self._metric_text()
        if metric:
            lines.append(f"  validation: {metric}")
        if self.log_file is not None:
            lines.append(f"  full log: {self.log_file}")
        return "\n".join(lines)

    def _finished(self, engine: Engine) -> None:
        if self._bar is None and self._file_handler is None:
            return  # TERMINATE is followed by COMPLETED: report once
        text = self.summary(engine)
        self._close()
        if self.log_file is not None:
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(text + "\n")
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def _failed(self, engine: Engine, err: BaseException) -> None:
        self._close()
        raise err  # Ignite re-raises only when no EXCEPTION_RAISED handler does: keep the error


def _first_loss(output: Any) -> float:
    item = output[0] if isinstance(output, (list, tuple)) else output
    loss = item["loss"] if isinstance(item, dict) else item
    return float(loss)
