"""Validate once more when a training ends between two scheduled validations; key metrics where lower is better."""

from __future__ import annotations

from typing import Any

from ignite.engine import Events

__all__ = ["FinalValidationHandler", "LowerIsBetter"]


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


def _lower(current: float, best: float) -> bool:
    return best < 0 or current < best  # MONAI starts best_metric at -1; error scores are >= 0


class LowerIsBetter:
    """Make a MONAI evaluator's best key metric the LOWEST one (an error such as the CREMI score).

    MONAI's ``Workflow`` starts ``best_metric`` at -1 and keeps a value that ``metric_cmp_fn``
    prefers (default: higher). Listed in ``validate#handlers``, this sets the evaluator's
    ``metric_cmp_fn`` when it is attached, so ``best_metric`` / ``best_metric_epoch`` (the
    progress display, MLflow's best-checkpoint logging) follow the lowest value; pair it with
    ``key_metric_negative_sign: true`` in the ``CheckpointSaver`` that keeps the best weights.
    For scores >= 0.

    Example:
        >>> from ignite.engine import Engine
        >>> engine = Engine(lambda e, b: None)
        >>> LowerIsBetter().attach(engine)
        >>> engine.metric_cmp_fn(3.0, -1), engine.metric_cmp_fn(3.0, 2.0), engine.metric_cmp_fn(1.0, 2.0)
        (True, False, True)
    """

    def attach(self, engine: Any) -> None:
        """Set ``engine.metric_cmp_fn`` (read by MONAI's ``Workflow`` at every validation)."""
        engine.metric_cmp_fn = _lower
