"""Small reference models used by the demo, simulations and reproductions."""

from __future__ import annotations

import torch
from torch import nn


def logistic_regression(num_features: int, num_classes: int) -> nn.Module:
    """Multinomial logistic regression (a single linear layer over flat features)."""
    return nn.Linear(num_features, num_classes)


def mlp(num_features: int, num_classes: int, hidden: int = 64) -> nn.Module:
    """One hidden ReLU layer."""
    return nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


class _Unflatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], 1, 28, 28) if x.dim() == 2 else x


def mnist_cnn(num_classes: int = 10) -> nn.Module:
    """The CNN of McMahan et al. 2017: two 5x5 convs (32, 64) with 2x2 max pooling, 512 dense."""
    return nn.Sequential(
        _Unflatten(),
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, num_classes),
    )


def seeded(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise `model` deterministically from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return model
