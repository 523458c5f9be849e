"""latest_checkpoint and TimeLimitHandler."""

from __future__ import annotations

import time

import pytest
from ignite.engine import Engine

from cseg_monai.handlers import TimeLimitHandler, latest_checkpoint


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for n in (3, 12, 7):
        (tmp_path / f"checkpoint_epoch={n}.pt").write_bytes(b"")
    (tmp_path / "model.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).endswith("checkpoint_epoch=12.pt")


def test_time_limit_stops_engine():
    engine = Engine(lambda e, b: time.sleep(0.05))
    TimeLimitHandler(0.3).attach(engine)
    engine.run(range(100), max_epochs=10)
    assert 0 < engine.state.iteration < 100  # 0.3 s of 0.05 s iterations, not 1000 of them
    with pytest.raises(ValueError, match="positive"):
        TimeLimitHandler(0)
