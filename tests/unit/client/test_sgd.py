"""The one local SGD step: FedProx pulls towards the global model in `TorchApp` and in the
simulation's kernels alike (plain and DP-SGD), and momentum follows `torch.optim.SGD`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client.sgd import SGD
from fedcore.client.torch_app import TorchApp
from fedcore.protocol.messages import LocalDPConfig, TrainConfig
from fedcore.protocol.params import Params
from fedcore.sim.backends.opacus_reference import train_with_opacus
from fedcore.sim.backends.private import DPSettings, train_vectorised_private
from fedcore.sim.backends.sequential import LocalData, LocalResult, TrainJob, train_sequential
from fedcore.sim.backends.vmap import train_vectorised

MUS = (0.0, 0.5, 2.0, 5.0)


def _data() -> LocalData:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    return x, (x @ rng.normal(size=(6, 4))).argmax(axis=1).astype(np.int64)


def _model() -> nn.Module:
    torch.manual_seed(2)
    return nn.Linear(6, 4)


def _global() -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in _model().state_dict().items()}


def _config(mu: float, dp: LocalDPConfig | None = None) -> TrainConfig:
    return TrainConfig(local_epochs=3, batch_size=8, learning_rate=0.1, proximal_mu=mu,
                       local_dp=dp)


# DP-SGD with almost no noise and a clip that rarely binds: the proximal pull still shows
TINY_NOISE = LocalDPConfig(noise_multiplier=1e-4, max_grad_norm=10.0)


def _norm(update: Params) -> float:
    return float(np.sqrt(sum(np.square(np.asarray(v, np.float64)).sum() for v in update.values())))


def _torch_app_update(dp: LocalDPConfig | None) -> Callable[[float], float]:
    def update(mu: float) -> float:
        torch.manual_seed(4)  # Opacus' sampling and noise
        x, y = _data()
        loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                            batch_size=8)
        start = _global()
        fit = TorchApp(_model(), train_loader=loader).fit(start, _config(mu, dp))
        return _norm({k: np.subtract(fit.params[k], start[k]) for k in start})
    return update


def _kernel_update(kernel: Callable[..., Iterable[LocalResult]], **kwargs: object
                   ) -> Callable[[float], float]:
    def update(mu: float) -> float:
        job = TrainJob(model=_model(), global_params=_global(), clients=[_data()], seeds=[3],
                       settings=_config(mu))
        (local,) = list(kernel(job, **kwargs))
        return _norm(local.update)
    return update


DP = DPSettings(noise_multiplier=TINY_NOISE.noise_multiplier,
                max_grad_norm=TINY_NOISE.max_grad_norm)


@pytest.mark.parametrize("update_norm", [
    _torch_app_update(None), _torch_app_update(TINY_NOISE),
    _kernel_update(train_sequential), _kernel_update(train_vectorised),
    _kernel_update(train_vectorised_private, dp=DP), _kernel_update(train_with_opacus, dp=DP),
], ids=["torch_app", "torch_app_dp_sgd", "sequential", "vectorised", "vectorised_dp_sgd",
        "opacus_reference"])
def test_the_update_shrinks_as_the_proximal_mu_grows(update_norm: Callable[[float], float]) -> None:
    # act
    norms = [update_norm(mu) for mu in MUS]

    # assert: a wrong-signed proximal term would push away from the global model instead
    assert all(a > b for a, b in itertools.pairwise(norms)), norms
    assert norms[-1] < 0.9 * norms[0]


def test_momentum_follows_torch_optim_sgd() -> None:
    # arrange
    ours, theirs = _model(), _model()
    x, y = (torch.from_numpy(a) for a in _data())
    sgd = SGD(learning_rate=0.05, momentum=0.9)
    reference = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)

    # act
    for _ in range(5):
        sgd.step(dict(ours.named_parameters()), nn.functional.cross_entropy(ours(x), y))
        reference.zero_grad()
        nn.functional.cross_entropy(theirs(x), y).backward()  # type: ignore[no-untyped-call]
        reference.step()

    # assert
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dp", [None, TINY_NOISE], ids=["sgd", "dp_sgd"])
def test_torch_app_trains_with_its_own_loss_function(dp: LocalDPConfig | None) -> None:
    # arrange: a loss that only remembers it was asked, and whose gradient is zero
    calls: list[int] = []

    def no_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(len(targets))
        return outputs.sum() * 0.0

    x, y = _data()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8)
    start = _global()

    # act
    fit = TorchApp(_model(), train_loader=loader, loss_fn=no_loss).fit(
        start, _config(0.0, dp))

    # assert: every batch went through it; plain SGD did not move (DP-SGD moved by noise only)
    assert len(calls) >= 3 * 5 - 2
    if dp is None:
        assert _norm({k: np.subtract(fit.params[k], start[k]) for k in start}) == 0.0
