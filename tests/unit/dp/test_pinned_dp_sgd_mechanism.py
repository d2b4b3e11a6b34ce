"""DP-SGD runs the mechanism the accountant prices, in both modes.

The accountant prices Poisson subsampling at rate 1/len(loader): the batches a step sees
must vary in size around the loader's batch size (a fixed-size batch is a different
mechanism). In secure mode every step's noise is Opacus' hardened draw (one discarded (1, 1)
sample, then four full Gaussians summed and halved, per parameter) from the one CPU generator
that was refilled from the OS before that step; without secure mode it is one plain draw per
parameter. Zero-step entries spend nothing, and the arguments that make no mechanism at all
(no epoch, a non-finite noise or clip) are refused before any step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fedcore.dp.opacus as dp_opacus
from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import HistoryEntry, Mechanism, epsilon, train_private


def _loader(n: int, batch_size: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 3, generator=gen), torch.randint(0, 2, (n,), generator=gen))
    return DataLoader(data, batch_size=batch_size, generator=torch.Generator().manual_seed(1))


def _train(loader: DataLoader[tuple[torch.Tensor, ...]], *, secure: bool, epochs: int = 1,
           criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
           **overrides: Any) -> tuple[nn.Module, PrivacyAccountant, int]:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    accountant = PrivacyAccountant()
    settings: dict[str, Any] = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, **overrides}
    result = train_private(model=model, optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=0.1),
                           data_loader=loader, epochs=epochs, accountant=accountant, delta=1e-5,
                           criterion=criterion, secure_mode=secure, **settings)
    return model, accountant, result.steps


@pytest.mark.parametrize("secure", [False, True])
def test_batches_are_poisson_sampled_around_the_loaders_batch_size(secure: bool) -> None:
    sizes: list[int] = []
    loss = nn.CrossEntropyLoss()

    def counting(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        sizes.append(len(labels))
        return loss(outputs, labels)

    _, accountant, steps = _train(_loader(100, 10), secure=secure, epochs=2, criterion=counting)

    assert steps == len(sizes) == 20
    assert len(set(sizes)) >= 4  # Poisson: sizes vary (fixed batches would all be 10)
    assert sum(sizes) / len(sizes) == pytest.approx(10, abs=3)  # 4.5 std of the mean
    assert accountant.history == (HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=20),)


def _spy_normal(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, ...], Any]]:
    calls: list[tuple[tuple[int, ...], Any]] = []
    real = torch.normal

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        out = real(*args, **kwargs)
        calls.append((tuple(out.shape), kwargs.get("generator")))
        return out

    monkeypatch.setattr(torch, "normal", spy)
    return calls


def test_secure_mode_draws_hardened_noise_from_the_refilled_generator(
        monkeypatch: pytest.MonkeyPatch) -> None:
    refills: list[torch.Generator] = []
    real_refill = dp_opacus.refill_generator

    def counting_refill(gen: torch.Generator) -> None:
        refills.append(gen)
        real_refill(gen)

    monkeypatch.setattr(dp_opacus, "refill_generator", counting_refill)
    calls = _spy_normal(monkeypatch)

    _, _, steps = _train(_loader(40, 10), secure=True)

    assert steps == 4
    assert len(refills) == steps + 1  # once when made, then before every step
    assert len({id(g) for g in refills}) == 1  # on CPU one generator samples and noises
    per_step = [(1, 1)] + [(2, 3)] * 4 + [(1, 1)] + [(2,)] * 4  # weight, then bias
    assert [shape for shape, _ in calls] == per_step * steps
    assert all(gen is refills[0] for _, gen in calls)


def test_without_secure_mode_the_noise_is_one_draw_per_parameter_from_the_given_generator(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy_normal(monkeypatch)
    noise_generator = torch.Generator().manual_seed(3)

    _, _, steps = _train(_loader(40, 10), secure=False, noise_generator=noise_generator)

    assert [shape for shape, _ in calls] == [(2, 3), (2,)] * steps
    assert all(gen is noise_generator for _, gen in calls)


def test_entries_of_zero_steps_spend_nothing_whatever_their_noise() -> None:
    real = HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=20)
    free = HistoryEntry(noise_multiplier=0.0, sample_rate=1.0, steps=0)  # no noise: inf if run

    for mechanism in Mechanism:
        assert epsilon([free], delta=1e-5, mechanism=mechanism) == 0.0
    alone = epsilon([real], delta=1e-5, mechanism=Mechanism.RDP)
    assert 0 < alone < math.inf
    assert epsilon([free, real, free], delta=1e-5, mechanism=Mechanism.RDP) == alone


@pytest.mark.parametrize(("overrides", "message"), [
    ({"epochs": 0}, "epochs"),
    ({"noise_multiplier": math.nan}, "noise_multiplier"),
    ({"noise_multiplier": math.inf}, "noise_multiplier"),
    ({"max_grad_norm": math.inf}, "max_grad_norm"),
    ({"max_grad_norm": math.nan}, "max_grad_norm"),
    ({"max_grad_norm": -1.0}, "max_grad_norm"),
])
def test_arguments_that_make_no_mechanism_are_refused_before_any_step(
        overrides: dict[str, Any], message: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    accountant = PrivacyAccountant()
    settings: dict[str, Any] = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "epochs": 1,
                                **overrides}

    with pytest.raises(ValueError, match=message):
        train_private(model=model, optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=0.1),
                      data_loader=_loader(20, 5), accountant=accountant, delta=1e-5, **settings)

    assert accountant.history == ()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
