"""The demo's client app: one client's non-IID slice of the digits data and a small MLP."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client.torch_app import TorchApp, state_to_params
from fedcore.data.digits import load_digits_split
from fedcore.data.partition import dirichlet_partition, iid_partition
from fedcore.protocol.params import Array


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitsSetup:
    """How the digits data is spread over the federation."""

    num_clients: int
    alpha: float = 0.5
    seed: int = 0
    batch_size: int = 16


def build_model(seed: int = 0) -> nn.Module:
    """A 64-64-10 MLP, initialised from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad():
        for p in model.parameters():
            bound = 1.0 / (p.shape[-1] ** 0.5) if p.dim() > 1 else 0.1
            p.uniform_(-bound, bound, generator=gen)
    return model


def initial_params(seed: int = 0) -> dict[str, Array]:
    """The model's initial parameters, for the coordinator."""
    return state_to_params(build_model(seed))


def make_app(
    setup: DigitsSetup,
    partition: int,
    *,
    device: str = "cpu",
    privacy_dir: Path | None = None,
    privacy_budget: float | None = None,
    secure_rng: bool = False,
) -> TorchApp:
    """Client `partition` of `setup`: its Dirichlet(alpha) training slice and a test share.

    Training data are skewed across clients by a Dirichlet(alpha) draw over labels; the
    held-out test split is spread IID, so the example-weighted mean of the clients'
    evaluations is the accuracy on the whole test split.
    """
    if not 0 <= partition < setup.num_clients:
        raise ValueError(f"partition must be in 0..{setup.num_clients - 1}, got {partition}")
    split = load_digits_split(seed=setup.seed)
    train_idx = dirichlet_partition(
        split.y_train, setup.num_clients, alpha=setup.alpha, seed=setup.seed, min_size=10
    )[partition]
    test_idx = iid_partition(len(split.y_test), setup.num_clients, seed=setup.seed)[partition]
    gen = torch.Generator().manual_seed(setup.seed * 1000 + partition)
    train = TensorDataset(
        torch.from_numpy(split.x_train[train_idx]), torch.from_numpy(split.y_train[train_idx])
    )
    test = TensorDataset(
        torch.from_numpy(split.x_test[test_idx]), torch.from_numpy(split.y_test[test_idx])
    )
    train_loader: DataLoader[tuple[torch.Tensor, torch.Tensor]] = DataLoader(
        train, batch_size=setup.batch_size, shuffle=True, generator=gen  # type: ignore[arg-type]
    )
    test_loader: DataLoader[tuple[torch.Tensor, torch.Tensor]] = DataLoader(
        test, batch_size=256  # type: ignore[arg-type]
    )
    return TorchApp(
        build_model(setup.seed),
        train_loader=train_loader,
        test_loader=test_loader,
        device=device,
        momentum=0.9,
        privacy_dir=privacy_dir,
        privacy_budget=privacy_budget,
        secure_rng=secure_rng,
    )
