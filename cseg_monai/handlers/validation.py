"""Validate once more when a training ends between two scheduled validations."""

from __future__ import annotations

from typing import Any

from ignite.engine import Events

__all__ = ["FinalValidationHandler"]


class FinalValidationHandler:
    """Run the validator when the trainer completes, unless its last epoch was just validated.

    A training stopped by a time limit, or whose ``max_epochs`` is not a multiple of the
    validation interval, would otherwise end with its last weights never validated (and,
    with a key-metric ``CheckpointSaver`` on the validator, possibly no best model at all).
    List it right after MONAI's ``ValidationHandler`` in ``train#handlers``.

    Args:
        validator: the evaluator run by ``ValidationHandler`` (``@validate#evaluator``).

    Example:
        >>> FinalValidationHandler(validator=None).validator is None
        True
    """

    def __init__(self, validator: Any) -> None:
        self.validator = validator

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine) -> None:
        if self.validator is None:
            return
        state = getattr(self.validator, "state", None)
        last = getattr(state, "epoch", 0) if state is not None else 0
        if last != engine.state.epoch or getattr(state, "iteration", 0) == 0:
            self.validator.run(engine.state.epoch)
