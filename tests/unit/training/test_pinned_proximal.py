"""FedProx pulls local training towards the global model, in every trainer separately.

Each trainer is checked on its own (TorchApp, the sequential and the vectorised simulation
backends): comparing the backends with each other cannot see a sign error they share. The
property: with mu > 0 a client's update (local - global) is shorter than with mu = 0 on the
same data and seed; a proximal term with the wrong sign makes it longer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client.torch_app import TorchApp
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params
from fedcore.sim.backends.sequential import LocalResult, TrainJob, train_sequential
from fedcore.sim.backends.vmap import train_vectorised

FEATURES, CLASSES, EXAMPLES = 6, 3, 40
MU = 1.0


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 8), nn.Tanh(), nn.Linear(8, CLASSES))


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32), rng.integers(0, CLASSES, EXAMPLES)


def _settings(mu: float) -> TrainConfig:
    return TrainConfig(local_epochs=4, batch_size=8, learning_rate=0.3, proximal_mu=mu)


def _global(model: nn.Module) -> dict[str, np.ndarray]:
    return {n: p.detach().numpy().copy() for n, p in model.named_parameters()}


def _norm(update: Params) -> float:
    return float(np.sqrt(sum(float(np.sum(np.square(v))) for v in update.values())))


def _torch_app_update(mu: float) -> float:
    model = _model()
    start = _global(model)
    x, y = _data()
    torch.manual_seed(1)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8)
    app = TorchApp(model, train_loader=loader)
    result = app.fit(start, _settings(mu))
    return _norm({k: np.asarray(result.params[k]) - start[k] for k in start})


def _backend_update(train: Callable[[TrainJob], Iterator[LocalResult]], mu: float) -> float:
    model = _model()
    job = TrainJob(model=model, global_params=_global(model), clients=[_data()], seeds=[5],
                   settings=_settings(mu))
    (result,) = list(train(job))
    return _norm(result.update)


TRAINERS: dict[str, Callable[[float], float]] = {
    "torch_app": _torch_app_update,
    "sequential": lambda mu: _backend_update(train_sequential, mu),
    "vectorised": lambda mu: _backend_update(train_vectorised, mu),
}


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_the_proximal_term_shrinks_the_update(trainer: str) -> None:
    update = TRAINERS[trainer]

    free, pulled = update(0.0), update(MU)

    assert free > 0.05  # the data moves the model at all
    assert pulled < 0.9 * free, (trainer, free, pulled)


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_a_stronger_pull_keeps_the_model_closer(trainer: str) -> None:
    update = TRAINERS[trainer]

    assert update(4 * MU) < update(MU)
