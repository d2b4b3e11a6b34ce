"""TorchApp on the edges of its data: a training set with no examples takes no step and reports
a finite loss (0) rather than failing on a division, so the task handler refuses it with its own
typed error (fewer than one example), and the module is left as loaded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client import ClientAppError, TaskHandler
from fedcore.client.torch_app import TorchApp
from fedcore.protocol.messages import Task, TaskKind, TrainConfig
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
