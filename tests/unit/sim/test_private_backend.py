"""The vectorised DP-SGD backend against Opacus (through `fedcore.dp.opacus.train_private`),
with the same Poisson batches (same sampler seeds) and the same noise generators."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import train_private
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params
from fedcore.sim.backends.private import DPSettings, poisson_plan, train_vectorised_private
from fedcore.sim.backends.sequential import LocalData, TrainJob

FEATURES, CLASSES = 5, 3
SIZES, SEEDS, NOISE_SEEDS = [23, 7, 40], [101, 102, 103], [7, 8, 9]


def _job(model: nn.Module, params: Params, clients: Sequence[LocalData], seeds: Sequence[int],
         settings: TrainConfig, *, epochs: Sequence[int] | None = None) -> TrainJob:
    return TrainJob(model=model, global_params=params, clients=clients, seeds=seeds,
                    settings=settings, epochs=epochs)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 6), nn.Tanh(), nn.Linear(6, CLASSES))


def _clients() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [(rng.normal(size=(n, FEATURES)).astype(np.float32) * 3, rng.integers(0, CLASSES, n))
            for n in SIZES]


def _opacus(start: dict[str, np.ndarray], data, seed: int, noise_seed: int,
            settings: TrainConfig, dp: DPSettings) -> tuple[dict[str, np.ndarray], float]:
    model = _model()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in start.items()})
    x, y = data
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                        batch_size=settings.batch_size,
                        generator=torch.Generator().manual_seed(seed))
    result = train_private(
        model=model,
        optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=settings.learning_rate),
        data_loader=loader, noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm, epochs=settings.local_epochs,
        accountant=PrivacyAccountant(), delta=1e-5, proximal_mu=settings.proximal_mu,
        global_state={k: torch.from_numpy(v.copy()) for k, v in start.items()},
        noise_generator=torch.Generator().manual_seed(noise_seed),
    )
    return {k: v.numpy() - start[k] for k, v in result.state.items()}, result.loss


@pytest.mark.parametrize(
    ("noise_multiplier", "mu"), [(0.0, 0.0), (1.3, 0.0), (0.7, 0.5)],
    ids=["clipping-only", "noise", "noise-and-fedprox"],
)
def test_each_client_trains_as_opacus_trains_it_alone(noise_multiplier: float, mu: float) -> None:
    # arrange: a tight clipping norm, so that clipping is active on most examples
    settings = TrainConfig(local_epochs=2, batch_size=5, learning_rate=0.2, proximal_mu=mu)
    dp = DPSettings(noise_multiplier=noise_multiplier, max_grad_norm=0.3)
    start = {k: v.detach().numpy().copy() for k, v in _model().state_dict().items()}
    clients = _clients()

    # act
    ours = {
        r.client: r
        for r in train_vectorised_private(
            _job(_model(), start, clients, SEEDS, settings),
            dp=dp,
            noise_generators=[torch.Generator().manual_seed(s) for s in NOISE_SEEDS],
        )
    }

    # assert
    for k, data in enumerate(clients):
        update, loss = _opacus(start, data, SEEDS[k], NOISE_SEEDS[k], settings, dp)
        assert ours[k].train_loss == pytest.approx(loss, rel=1e-5)
        for name, value in update.items():
            np.testing.assert_allclose(ours[k].update[name], value, rtol=1e-4, atol=1e-6)


def test_shared_noise_has_the_calibrated_scale() -> None:
    # arrange: zero learning signal is impossible, so compare a noisy and a noise-free run:
    # their difference after one step is lr * noise / expected batch size
    settings = TrainConfig(local_epochs=1, batch_size=400, learning_rate=1.0)
    start = {k: v.detach().numpy().copy() for k, v in _model().state_dict().items()}
    clients = [c for c in _clients() for _ in range(30)]
    seeds = list(range(len(clients)))

    def run(sigma: float) -> np.ndarray:
        dp = DPSettings(noise_multiplier=sigma, max_grad_norm=0.5)
        results = sorted(
            train_vectorised_private(_job(_model(), start, clients, seeds, settings), dp=dp),
            key=lambda r: r.client,
        )
        return np.stack([r.update["0.weight"] for r in results])

    # act
    diff = run(2.0) - run(0.0)

    # assert: one step per client (n <= batch), so diff = -noise / n, noise ~ N(0, (2 * 0.5)^2)
    expected = np.array([poisson_plan(len(y), 400)[2] for _, y in clients], dtype=np.float64)
    scaled = diff * expected[:, None, None]
    assert scaled.std() == pytest.approx(1.0, rel=0.05)
    assert abs(scaled.mean()) < 0.05
