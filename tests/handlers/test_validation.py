"""FinalValidationHandler: the last weights are validated once, whatever the interval."""

from __future__ import annotations

from ignite.engine import Engine, Events

from cseg_monai.handlers import FinalValidationHandler


class _Validator:
    def __init__(self) -> None:
        self.state = type("S", (), {"epoch": 0, "iteration": 0})()
        self.runs: list[int] = []

    def run(self, epoch: int) -> None:
        self.runs.append(epoch)
        self.state.epoch, self.state.iteration = epoch, self.state.iteration + 1


def _train(max_epochs: int, interval: int) -> list[int]:
    validator = _Validator()
    trainer = Engine(lambda e, b: None)

    @trainer.on(Events.EPOCH_COMPLETED(every=interval))
    def _validate(engine):  # as MONAI's ValidationHandler
        validator.run(engine.state.epoch)

    FinalValidationHandler(validator).attach(trainer)
    trainer.run(range(2), max_epochs=max_epochs)
    return validator.runs


def test_validates_the_last_epoch_once():
    assert _train(5, 2) == [2, 4, 5]  # 5 is not a multiple of 2: validated at the end
    assert _train(4, 2) == [2, 4]  # the last epoch was validated already: not again
    assert _train(3, 10) == [3]  # never validated during training


def test_no_validator_is_a_no_op():
    trainer = Engine(lambda e, b: None)
    FinalValidationHandler(None).attach(trainer)
    trainer.run(range(1), max_epochs=1)
