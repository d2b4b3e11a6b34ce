"""TorchApp on the edges of its data and budget: a training set with no examples takes no step
and reports a finite loss (0) rather than failing on a division, so the task handler refuses it
with its own typed error (fewer than one example), and one example reports its own loss;
evaluation uses the test data when there is some, else the training data; the coordinator's target epsilon is a limit
that a looser local budget does not lift: a task past it is declined for good, untrained and
unspent; with a `privacy_dir` the spending survives a restart (a new app on the same
directory), without one it is this app's alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client import ClientAppError, TaskHandler
from fedcore.client.app import DeclineTask
from fedcore.client.torch_app import TorchApp
from fedcore.protocol.messages import LocalDPConfig, Task, TaskKind, TrainConfig
from fedcore.protocol.specs import spec_of


def _empty_app() -> TorchApp:
    torch.manual_seed(0)
    empty = TensorDataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    return TorchApp(nn.Linear(3, 2), train_loader=DataLoader(empty, batch_size=4))


def test_training_on_no_examples_takes_no_step_and_reports_a_finite_loss() -> None:
    app = _empty_app()
    start = app.get_parameters()

    fit = app.fit(start, TrainConfig(local_epochs=2, learning_rate=0.1))

    assert fit.local_steps == 0 and fit.num_examples == 0
    assert math.isfinite(fit.metrics["loss"]) and fit.metrics["loss"] == 0.0
    for name, value in start.items():
        np.testing.assert_array_equal(fit.params[name], value)


def test_the_handler_refuses_a_training_on_no_examples_with_its_own_error() -> None:
    app = _empty_app()
    model = app.get_parameters()
    task = Task(round=1, task_id="t1", kind=TaskKind.TRAIN, train=TrainConfig(),
                model_spec=spec_of(model))

    with pytest.raises(ClientAppError, match="num_examples"):
        TaskHandler(app, "c1").handle(task, model)


def test_the_coordinators_target_epsilon_limits_a_task_under_a_looser_local_budget() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=gen), torch.randint(0, 2, (40,), generator=gen)
    torch.manual_seed(0)
    app = TorchApp(nn.Linear(3, 2), train_loader=DataLoader(TensorDataset(x, y), batch_size=10),
                   privacy_budget=50.0)
    # one planned round: the first task spends the whole target, a second would pass it
    config = TrainConfig(local_dp=LocalDPConfig(target_epsilon=2.0, planned_rounds=1))
    app.fit(app.get_parameters(), config)
    spent, steps = app.accountant.epsilon(1e-5), app.accountant.steps
    assert spent == pytest.approx(2.0, rel=0.05) and steps == 4
    before = app.get_parameters()

    with pytest.raises(DeclineTask) as refusal:
        app.fit({k: v.copy() for k, v in before.items()}, config)

    assert refusal.value.permanent
    assert app.accountant.steps == steps  # nothing spent
    for name, value in app.get_parameters().items():
        np.testing.assert_array_equal(value, before[name])


def test_training_on_one_example_reports_that_examples_loss() -> None:
    x, y = torch.tensor([[1.0, -1.0, 0.5]]), torch.tensor([1])
    model = nn.Linear(3, 2)
    app = TorchApp(model, train_loader=DataLoader(TensorDataset(x, y), batch_size=4))
    start = app.get_parameters()
    expected = float(nn.functional.cross_entropy(model(x), y))

    fit = app.fit(start, TrainConfig(local_epochs=1, learning_rate=0.1))

    assert fit.local_steps == 1 and fit.num_examples == 1
    assert fit.metrics["loss"] == pytest.approx(expected, rel=1e-6)  # the loss before its step


def test_evaluation_uses_the_test_data_when_there_is_some() -> None:
    torch.manual_seed(0)
    train = TensorDataset(torch.randn(12, 3), torch.randint(0, 2, (12,)))
    test_x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    test = TensorDataset(test_x, torch.tensor([0, 1, 1]))
    params = {"weight": np.eye(2, 3, dtype=np.float32), "bias": np.zeros(2, np.float32)}
    # logits: [1, 0], [0, 1], [0, 0] -> predictions 0, 1, 0 (a tie goes to the first class)
    with_test = TorchApp(nn.Linear(3, 2), train_loader=DataLoader(train, batch_size=5),
                         test_loader=DataLoader(test, batch_size=2))
    train_only = TorchApp(nn.Linear(3, 2), train_loader=DataLoader(train, batch_size=5))

    on_test = with_test.evaluate(params, TrainConfig())
    on_train = train_only.evaluate(params, TrainConfig())

    assert on_test.num_examples == 3 and on_test.metrics["accuracy"] == pytest.approx(2 / 3)
    logits = test_x @ torch.from_numpy(params["weight"]).T
    assert on_test.loss == pytest.approx(
        float(nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1]))), rel=1e-6)
    assert on_train.num_examples == 12  # no test data: the training data


def _dp_app(privacy_dir: Path | None) -> TorchApp:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 3, generator=gen), torch.randint(0, 2, (20,), generator=gen)
    return TorchApp(nn.Linear(3, 2), train_loader=DataLoader(TensorDataset(x, y), batch_size=10),
                    privacy_dir=privacy_dir)


@pytest.mark.parametrize("kept", [True, False])
def test_the_privacy_spent_survives_a_restart_only_with_a_privacy_dir(
        tmp_path: Path, kept: bool) -> None:
    directory = tmp_path / "state" if kept else None
    config = TrainConfig(local_dp=LocalDPConfig(noise_multiplier=1.0))
    first = _dp_app(directory)
    first.fit(first.get_parameters(), config)
    assert first.accountant.steps == 2

    restarted = _dp_app(directory)

    assert restarted.accountant.steps == (2 if kept else 0)
    assert restarted.accountant.epsilon(1e-5) == pytest.approx(
        first.accountant.epsilon(1e-5) if kept else 0.0)
    assert (directory is not None and any(directory.iterdir())) == kept
