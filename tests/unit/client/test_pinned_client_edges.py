"""Client edges: `max_train_s` ends local training only once the time is past it (a fake clock
standing exactly on the limit trains on), and the task handler keeps the control-variate store
it is given (else one of its own)."""

from __future__ import annotations

import types

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client import EvalResult, FitResult, FunctionalApp, TaskHandler, torch_app
from fedcore.client.scaffold import BlobVariates
from fedcore.client.torch_app import TorchApp
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.specs import spec_of


def _app() -> TorchApp:
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    return TorchApp(nn.Linear(4, 2), train_loader=DataLoader(TensorDataset(x, y), batch_size=8))


def _steps_with_clock(monkeypatch, after_start: float) -> int:  # type: ignore[no-untyped-def]
    """Local steps of 3 epochs of 4 batches under max_train_s = 5 when the clock reads 100 at
    the start and 100 + `after_start` ever after (elapsed = now - start, not now + start)."""
    readings = iter([100.0])
    fake = types.SimpleNamespace(monotonic=lambda: next(readings, 100.0 + after_start))
    monkeypatch.setattr(torch_app, "time", fake)
    app = _app()
    result = app.fit(app.get_parameters(),
                     TrainConfig(local_epochs=3, learning_rate=0.1, max_train_s=5.0))
    return result.local_steps


def test_training_standing_exactly_on_the_time_limit_goes_on(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert _steps_with_clock(monkeypatch, 5.0) == 3 * 4


def test_training_past_the_time_limit_stops_after_its_first_step(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert _steps_with_clock(monkeypatch, 5.001) == 1


def _functional() -> FunctionalApp:
    model = {"w": np.zeros(2, np.float32)}
    return FunctionalApp(get_parameters=lambda: dict(model),
                         fit=lambda p, c: FitResult(params=p, num_examples=1),
                         evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))


def test_the_handler_keeps_the_store_it_is_given_else_makes_its_own() -> None:
    store = BlobVariates()
    given = TaskHandler(_functional(), "c1", control_variates=store)
    assert given.control_variates is store
    own = TaskHandler(_functional(), "c1")
    assert isinstance(own.control_variates, BlobVariates) and own.control_variates is not store
    variate = {"w": np.array([1.5, -2.0])}
    own.control_variates.save(variate)
    loaded = own.control_variates.load(spec_of(variate))
    assert loaded is not None
    np.testing.assert_array_equal(loaded["w"], variate["w"])
    assert store.load(spec_of(variate)) is None  # the two stores are separate
