"""RunProgressHandler: one bar, a summary, the full log in a file, the console quiet meanwhile."""

from __future__ import annotations

import logging
import sys

import pytest
import torch
from ignite.engine import Engine, Events

from cseg_monai.handlers import ProgressBarHandler, RunProgressHandler


class _Evaluator:
    """What RunProgressHandler reads of a MONAI evaluator: ``state.metrics`` and the best metric."""

    def __init__(self) -> None:
        self.state = type("S", (), {"metrics": {}, "key_metric_name": "val_dice", "best_metric": -1, "best_metric_epoch": -1})()
        self.logger = logging.getLogger("test-evaluator")


def _trainer(evaluator: _Evaluator) -> Engine:
    engine = Engine(lambda e, b: [{"loss": torch.tensor(1.0 / e.state.iteration)}])

    @engine.on(Events.EPOCH_COMPLETED)
    def _validate(e):  # as a ValidationHandler + the evaluator's key metric would
        logging.getLogger("monai-like").info("epoch %d: val_dice %.2f", e.state.epoch, 0.1 * e.state.epoch)
        evaluator.state.metrics = {"val_dice": 0.1 * e.state.epoch}
        evaluator.state.best_metric, evaluator.state.best_metric_epoch = 0.1 * e.state.epoch, e.state.epoch

    return engine


def test_bar_summary_and_log_file(tmp_path, capsys):
    root = logging.getLogger()
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.INFO)
    old_level = root.level
    root.addHandler(console)
    root.setLevel(logging.INFO)
    try:
        evaluator = _Evaluator()
        engine = _trainer(evaluator)
        log = tmp_path / "out" / "train.log"
        RunProgressHandler(evaluator, log_file=log, enabled=True).attach(engine)
        engine.run(range(4), max_epochs=3)
        assert console.level == logging.INFO  # restored after the run
        assert log.parent / "train.log" not in root.handlers
    finally:
        root.removeHandler(console)
        root.setLevel(old_level)
    out = capsys.readouterr()
    assert "epoch 2: val_dice" not in out.out  # the INFO lines went to the file only
    text = log.read_text()
    assert "epoch 1: val_dice 0.10" in text and "epoch 3: val_dice 0.30" in text
    assert "training: 3 of 3 epochs" in text and "val_dice 0.3000 (best 0.3000 @ 3)" in text
    assert "last loss: 0.0833" in text  # 1 / 12, the last of 12 iterations
    assert "training: 3 of 3 epochs" in out.err and f"full log: {log}" in out.err
    assert not any(isinstance(h, logging.FileHandler) and h.baseFilename == str(log) for h in root.handlers)


def test_disabled_keeps_the_console_and_still_writes_the_file(tmp_path, capsys):
    root = logging.getLogger()
    console = logging.StreamHandler(sys.stdout)
    old_level = root.level
    root.addHandler(console)
    root.setLevel(logging.INFO)
    try:
        engine = _trainer(_Evaluator())
        RunProgressHandler(None, log_file=tmp_path / "train.log", enabled=False).attach(engine)
        engine.run(range(2), max_epochs=2)
    finally:
        root.removeHandler(console)
        root.setLevel(old_level)
    out = capsys.readouterr()
    assert "epoch 2: val_dice" in out.out and "training:" not in out.err
    assert "training: 2 of 2 epochs" in (tmp_path / "train.log").read_text()


def test_errors_propagate_and_the_console_is_restored(tmp_path):
    root = logging.getLogger()
    console = logging.StreamHandler(sys.stderr)
    root.addHandler(console)
    try:
        engine = Engine(lambda e, b: (_ for _ in ()).throw(ValueError("bad batch")))
        RunProgressHandler(None, log_file=tmp_path / "train.log").attach(engine)
        with pytest.raises(ValueError, match="bad batch"):
            engine.run(range(2), max_epochs=1)
        assert console.level == logging.NOTSET
    finally:
        root.removeHandler(console)


def test_progress_bar_handler_attaches_to_an_engine(capsys):
    engine = Engine(lambda e, b: {"loss": 0.5})
    ProgressBarHandler(output_transform=lambda out: out, persist=True, desc="demo").attach(engine)
    engine.run(range(3), max_epochs=1)
    assert "demo" in capsys.readouterr().err
