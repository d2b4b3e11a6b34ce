"""What an app provides: initial parameters, local training, local evaluation (NumPy in and out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from fedcore.errors import FedcoreError
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Metrics, Params


class ClientAppError(FedcoreError, RuntimeError):
    """The app returned something the protocol cannot use (wrong names, shapes, counts)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FitResult:
    """The locally trained parameters, how many examples produced them, and metrics (e.g. loss).

    `local_steps` (optimizer steps taken) is needed only by SCAFFOLD (`fedcore.client.scaffold`).
    """

    params: Params
    num_examples: int
    metrics: Metrics = field(default_factory=dict)
    local_steps: int = 0


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


class DeclineTask(FedcoreError):
    """Raised by an app's `fit`/`evaluate` to refuse a task cleanly (e.g. privacy budget spent).

    The client tells the coordinator `reason`, which counts the client as dropped for the task.
    With `permanent`, the client will refuse every later task of the run too (a spent privacy
    budget), and the coordinator stops selecting it.
    """

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


FitFn = Callable[[Params, TrainConfig], FitResult]
EvaluateFn = Callable[[Params, TrainConfig], EvalResult]


class FunctionalApp:
    """A `ClientApp` made of plain functions over NumPy arrays; no ML framework needed.

    Args:
        get_parameters: returns the local model's initial parameters.
        fit: trains from the given parameters and returns a `FitResult`; `config.max_train_s`
            (when > 0) is how long it may take, already capped by the client's own limit.
        evaluate: evaluates the given parameters; None declines evaluation tasks.
    """

    def __init__(
        self,
        *,
        get_parameters: Callable[[], Params],
        fit: FitFn,
        evaluate: EvaluateFn | None = None,
    ) -> None:
        if not callable(get_parameters) or not callable(fit):
            raise TypeError("get_parameters and fit must be callable")
        if evaluate is not None and not callable(evaluate):
            raise TypeError("evaluate must be callable or None")
        self._get_parameters = get_parameters
        self._fit = fit
        self._evaluate = evaluate

    def get_parameters(self) -> Params:
        """The local model's initial parameters."""
        return self._get_parameters()

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        """Train with the `fit` function."""
        return self._fit(params, config)

    def evaluate(self, params: Params, config: TrainConfig) -> EvalResult:
        """Evaluate with the `evaluate` function; declines when there is none."""
        if self._evaluate is None:
            raise DeclineTask("this client does not evaluate")
        return self._evaluate(params, config)
