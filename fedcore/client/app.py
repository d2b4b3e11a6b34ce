"""What an app provides: initial parameters, local training, local evaluation (NumPy in and out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fedcore.messages import TrainConfig
from fedcore.params import Metrics, Params


class ClientAppError(RuntimeError):
    """The app returned something the protocol cannot use (wrong names, shapes, counts)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FitResult:
    """The locally trained parameters, how many examples produced them, and metrics (e.g. loss)."""

    params: Params
    num_examples: int
    metrics: Metrics = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalResult:
    """Loss of the given parameters on local data, over how many examples, plus other metrics."""

    loss: float
    num_examples: int
    metrics: Metrics = field(default_factory=dict)


class ClientApp(Protocol):
    """The three things a federated client does. Implementations may use any ML framework."""

    def get_parameters(self) -> Params:
        """The local model's current parameters (used to initialise the global model)."""
        ...

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        """Train from `params` on local data as `config` says; return the new parameters."""
        ...

    def evaluate(self, params: Params, config: TrainConfig) -> EvalResult:
        """Evaluate `params` on local data."""
        ...
