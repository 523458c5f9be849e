"""FinalValidationHandler: the last weights are validated once, whatever the interval."""

from __future__ import annotations

from ignite.engine import Engine, Events

from cseg_monai.handlers import FinalValidationHandler, LowerIsBetter


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


def test_lower_is_better_makes_a_monai_evaluator_keep_the_lowest_key_metric():
    import torch
    from ignite.metrics import Metric
    from monai.engines import SupervisedEvaluator
    from monai.handlers import from_engine

    class Served(Metric):  # the next value of a list at every validation
        def __init__(self, values):
            self.values = list(values)
            super().__init__(output_transform=from_engine(["pred", "label"]))

        def reset(self):
            pass

        def update(self, output):
            pass

        def compute(self):
            return self.values.pop(0)

    loader = [{"image": torch.zeros(1, 1, 2, 2), "label": torch.zeros(1, 1, 2, 2)}]
    evaluator = SupervisedEvaluator(device="cpu", val_data_loader=loader, network=torch.nn.Identity(),
                                    key_val_metric={"err": Served([5.0, 3.0, 4.0])}, val_handlers=[LowerIsBetter()])  # fmt: skip
    best = []
    for epoch in range(1, 4):  # as ValidationHandler runs it after trainer epochs 1, 2, 3
        evaluator.run(global_epoch=epoch)
        best.append((evaluator.state.best_metric, evaluator.state.best_metric_epoch))
    assert best == [(5.0, 1), (3.0, 2), (3.0, 2)]
