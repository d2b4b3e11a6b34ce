"""What `train_private` reports and records besides the model.

The loss is the mean over the examples seen of the batches' mean losses (each batch weighted by
its size, empty Poisson batches left out); `steps` counts every step; and when training fails
part-way the steps already taken are still recorded in the accountant (they spent privacy), the
error reaches the caller, and Opacus' hooks are removed from the caller's model.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import HistoryEntry, train_private


def _loader(n: int, batch_size: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 3, generator=gen), torch.randint(0, 2, (n,), generator=gen))
    return DataLoader(data, batch_size=batch_size, generator=torch.Generator().manual_seed(4))


def _train(model: nn.Module, criterion: object, accountant: PrivacyAccountant,
           loader: DataLoader[tuple[torch.Tensor, ...]]) -> tuple[float, int]:
    result = train_private(model=model, optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=0.1),
                           data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0, epochs=2,
                           accountant=accountant, delta=1e-5, criterion=criterion,  # type: ignore[arg-type]
                           noise_generator=torch.Generator().manual_seed(5))
    return result.loss, result.steps


@pytest.mark.parametrize(("n", "batch_size"), [(60, 6), (30, 1)])  # the second: sizes 0, 1, 2..
def test_the_loss_is_the_example_weighted_mean_of_the_batch_losses(n: int, batch_size: int) -> None:
    sizes: list[int] = []

    def size_as_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # a batch's "mean loss" is its own size: the weighted mean is sum(n^2) / sum(n)
        sizes.append(len(labels))
        return (outputs * 0.0).mean() + float(len(labels))

    torch.manual_seed(0)
    loss, steps = _train(nn.Linear(3, 2), size_as_loss, PrivacyAccountant(),
                         _loader(n, batch_size))

    assert steps == len(sizes) == 2 * n // batch_size
    assert len(set(sizes)) > 2  # Poisson batches of several sizes: the weighting shows
    if batch_size == 1:
        assert {0, 1, 2} <= set(sizes)  # empty and single-example batches both occur
    seen = sum(sizes)
    assert loss == pytest.approx(sum(n * n for n in sizes) / seen, rel=1e-6)
    assert loss != pytest.approx(sum(sizes) / len(sizes), rel=1e-3)  # not the plain mean


def test_steps_taken_before_a_failure_are_recorded_and_the_error_propagates() -> None:
    calls = 0
    loss_fn = nn.CrossEntropyLoss()

    def fails_on_the_fourth_batch(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise RuntimeError("data source went away")
        return loss_fn(outputs, labels)

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    accountant = PrivacyAccountant()

    with pytest.raises(RuntimeError, match="data source went away"):
        _train(model, fails_on_the_fourth_batch, accountant, _loader(40, 10))

    assert accountant.history == (HistoryEntry(noise_multiplier=1.0, sample_rate=0.25, steps=3),)
    assert not model._forward_hooks and not getattr(model, "_full_backward_hooks", None)
