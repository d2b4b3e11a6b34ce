"""Tiny models and loaders for the DP tests: seeded, a few hundred examples, CPU."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

Loader = DataLoader[tuple[torch.Tensor, ...]]


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def _loader(*, n: int = 120, batch_size: int = 20, seed: int = 0, scale: float = 1.0) -> Loader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen) * scale
    y = torch.randint(0, 3, (n,), generator=gen)
    return DataLoader(
        TensorDataset(x, y), batch_size=batch_size, generator=torch.Generator().manual_seed(seed)
    )


def _sgd(lr: float = 0.1) -> Callable[..., torch.optim.Optimizer]:
    return lambda params: torch.optim.SGD(params, lr=lr)


@pytest.fixture
def make_model() -> Callable[..., nn.Module]:
    """`make_model(seed)`: a fresh 8-16-3 MLP with seeded weights."""
    return _model


@pytest.fixture
def make_loader() -> Callable[..., Loader]:
    """`make_loader(n=, batch_size=, seed=, scale=)`: random 8-feature, 3-class data."""
    return _loader


@pytest.fixture
def sgd() -> Callable[..., Callable[..., torch.optim.Optimizer]]:
    """`sgd(lr)`: an optimizer factory."""
    return _sgd
