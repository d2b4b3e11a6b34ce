"""TorchApp paths coverage of the client tests found unexercised: evaluation (mean loss and
accuracy, computed by hand here; an empty data set refused), SCAFFOLD's corrected fit (the
correction's gradient is added to each step; a correction for a tensor that is not trainable is
refused before any step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client.app import ClientAppError
from fedcore.client.torch_app import TorchApp
from fedcore.protocol.messages import TrainConfig


def _linear_app(x: torch.Tensor, y: torch.Tensor, *, test: bool = True) -> TorchApp:
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    return TorchApp(nn.Linear(2, 2), train_loader=loader, test_loader=loader if test else None)


def test_evaluate_reports_the_mean_loss_and_the_accuracy() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 0, 0])
    app = _linear_app(x, y)
    params = {"weight": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
              "bias": np.zeros(2, np.float32)}

    result = app.evaluate(params, TrainConfig())

    logits = x @ torch.tensor(params["weight"]).T
    expected_loss = float(nn.functional.cross_entropy(logits, y))  # the mean over all 5
    assert result.num_examples == 5
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)
    # predictions: 0, 1, tie (argmax 0), 0, 1 -> right on examples 0, 1, 3
    assert result.metrics["accuracy"] == pytest.approx(3 / 5)


def test_evaluating_on_an_empty_data_set_is_refused() -> None:
    app = _linear_app(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))

    with pytest.raises(ClientAppError):
        app.evaluate(app.get_parameters(), TrainConfig())


def test_a_scaffold_correction_adds_its_gradient_to_every_step() -> None:
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    config = TrainConfig(local_epochs=1, learning_rate=0.1)
    start = _linear_app(x, y).get_parameters()
    correction = {"bias": np.array([1.0, -2.0])}

    plain = _linear_app(x, y).fit({k: v.copy() for k, v in start.items()}, config)
    corrected = _linear_app(x, y).fit_corrected({k: v.copy() for k, v in start.items()}, config,
                                                correction)

    # a linear term's gradient is c whatever w: two steps, each about lr * c further down (the
    # loss's own gradient at the second step differs a little, as the first moved w)
    steps = plain.local_steps
    assert steps == 2
    np.testing.assert_allclose(corrected.params["bias"] - plain.params["bias"],
                               -config.learning_rate * steps * correction["bias"], rtol=0.1)
    np.testing.assert_allclose(corrected.params["weight"], plain.params["weight"], atol=0.02)


def test_a_correction_for_a_tensor_that_is_not_trainable_is_refused() -> None:
    app = _linear_app(torch.randn(4, 2), torch.randint(0, 2, (4,)))
    start = app.get_parameters()

    with pytest.raises(ClientAppError):
        app.fit_corrected(start, TrainConfig(), {"running_mean": np.zeros(2)})


def test_cuda_on_a_machine_without_it_is_refused_and_auto_falls_back_to_cpu() -> None:
    from fedcore.client.torch_app import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ClientAppError):
            resolve_device(device)


def test_the_reported_training_loss_is_the_mean_over_the_examples_seen() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 0, 0])
    app = _linear_app(x, y)  # batches of 4 and 1
    params = {"weight": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
              "bias": np.zeros(2, np.float32)}

    result = app.fit(params, TrainConfig(local_epochs=1, learning_rate=1e-9))  # w barely moves

    expected = float(nn.functional.cross_entropy(x @ torch.tensor(params["weight"]).T, y))
    assert result.metrics["loss"] == pytest.approx(expected, rel=1e-5)


def test_training_stops_taking_steps_once_max_train_s_is_past() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(40, 2), torch.randint(0, 2, (40,))
    app = _linear_app(x, y)  # 10 batches an epoch
    config = TrainConfig(local_epochs=3, learning_rate=0.1, max_train_s=1e-9)

    result = app.fit(app.get_parameters(), config)

    assert 1 <= result.local_steps < 30  # far fewer than 3 epochs of 10 batches


def test_no_later_epoch_takes_a_step_once_max_train_s_is_past() -> None:
    """The limit ends training, not only the current epoch: 50 epochs past a limit already
    spent take the one step that found the time spent, not one step each."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 2), torch.randint(0, 2, (40,))
    app = _linear_app(x, y)
    config = TrainConfig(local_epochs=50, learning_rate=0.1, max_train_s=1e-9)

    result = app.fit(app.get_parameters(), config)

    assert result.local_steps == 1
