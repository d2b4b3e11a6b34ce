"""The local step's parts by value: FedProx's term is `mu / 2 * ||w - w_start||^2` and its
gradient `mu * (w - w_start)` (numbers worked by hand), the objective adds it only when mu is
set, `SGD` without a momentum is plain SGD (each step is `lr * grad` of that step alone, as
`torch.optim.SGD(momentum=0)`), and `TorchApp`'s default optimizer is that plain SGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client.sgd import SGD, detached_copy, named_trainable, objective, sgd_step
from fedcore.client.torch_app import TorchApp
from fedcore.protocol.messages import TrainConfig
from fedcore.training.proximal import proximal_gradient, proximal_term

W = {"a": torch.tensor([1.0, -2.0]), "b": torch.tensor([[0.5]])}
START = {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([[-1.5]])}
# ||w - start||^2 = (1 - 3)^2 + (-2 - 1)^2 + (0.5 + 1.5)^2 = 4 + 9 + 4 = 17


@pytest.mark.parametrize("mu", [0.5, 1.0, 3.0])
def test_the_proximal_term_is_half_mu_times_the_squared_distance(mu: float) -> None:
    assert float(proximal_term(W, START, mu)) == pytest.approx(mu / 2 * 17.0)


def test_the_proximal_term_is_zero_at_the_start_and_grows_with_the_distance() -> None:
    assert float(proximal_term(START, START, 2.0)) == 0.0
    doubled = {k: START[k] + 2 * (W[k] - START[k]) for k in W}
    assert float(proximal_term(doubled, START, 2.0)) == pytest.approx(4 * 17.0)  # quadratic


def test_the_proximal_gradient_is_mu_times_the_displacement() -> None:
    grad = proximal_gradient(W["a"], START["a"], 0.5)

    torch.testing.assert_close(grad, torch.tensor([-1.0, -1.5]))
    torch.testing.assert_close(proximal_gradient(W["b"], START["b"], 4.0), torch.tensor([[8.0]]))


def test_the_objective_adds_the_term_only_when_mu_is_set() -> None:
    loss = torch.tensor(0.25)

    assert float(objective(loss, W, START, 0.0)) == 0.25
    assert float(objective(loss, W, START, 2.0)) == pytest.approx(0.25 + 17.0)


def test_sgd_without_momentum_steps_by_each_gradient_alone() -> None:
    w = {"w": torch.tensor([1.0, 2.0], requires_grad=True)}
    opt = SGD(learning_rate=0.1)  # the default: no momentum
    # loss = sum(c * w): its gradient is c, a different one each step
    for c in ([1.0, 0.0], [0.0, 2.0], [-3.0, 1.0]):
        before = w["w"].detach().clone()
        opt.step(w, (torch.tensor(c) * w["w"]).sum())
        torch.testing.assert_close(w["w"].detach(), before - 0.1 * torch.tensor(c))


def test_sgd_with_momentum_carries_the_velocity() -> None:
    w = {"w": torch.tensor([0.0], requires_grad=True)}
    opt = SGD(learning_rate=1.0, momentum=0.5)
    for _ in range(3):  # constant gradient 1: v = 1, 1.5, 1.75
        opt.step(w, w["w"].sum())
    torch.testing.assert_close(w["w"].detach(), torch.tensor([-(1.0 + 1.5 + 1.75)]))


def test_a_proximal_step_moves_by_lr_times_mu_times_the_displacement() -> None:
    w = {"w": torch.tensor([2.0, -1.0], requires_grad=True)}
    start = {"w": torch.tensor([0.0, 1.0])}
    zero_loss = (w["w"] * 0.0).sum()

    sgd_step(w, start, zero_loss, optimizer=SGD(learning_rate=0.1), mu=2.0)

    # grad = mu * (w - start) = [4, -4]; w - 0.1 * grad
    torch.testing.assert_close(w["w"].detach(), torch.tensor([1.6, -0.6]))


def test_named_trainable_leaves_out_frozen_parameters_and_copies_are_detached() -> None:
    model = nn.Linear(2, 2)
    model.bias.requires_grad_(False)

    trainable = named_trainable(model)
    anchor = detached_copy(trainable)

    assert list(trainable) == ["weight"] and trainable["weight"] is model.weight
    assert not anchor["weight"].requires_grad
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(anchor["weight"], model.weight.detach())  # a copy, not a view


def test_torch_apps_default_optimizer_is_plain_sgd() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(12, 3), torch.randint(0, 2, (12,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    model = nn.Linear(3, 2)
    app = TorchApp(model, train_loader=loader)
    start = app.get_parameters()

    fit = app.fit(start, TrainConfig(local_epochs=2, learning_rate=0.5))

    reference = nn.Linear(3, 2)
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()})
    opt = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.0)
    for _ in range(2):
        for inputs, targets in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(reference(inputs), targets).backward()
            opt.step()
    for name, value in reference.state_dict().items():
        np.testing.assert_allclose(fit.params[name], value.numpy(), rtol=1e-5, atol=1e-6)
